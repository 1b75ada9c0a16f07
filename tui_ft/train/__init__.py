"""Training: the loop, checkpoints, the overfitting monitor, run folders, the worker."""
