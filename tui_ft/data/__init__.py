"""Datasets, prompt styles, tokenization and batches: plain engine code, no UI."""
