"""tui-ft: instruction fine-tuning of GPT-2-family models from the terminal."""

import warnings

__version__ = "0.1.0"

# numpy is no dependency of tui-ft (nor of torch): torch's import says it is missing
# with a warning that reads like a fault on every command of a plain `pip install .`.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)
