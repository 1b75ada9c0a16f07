"""tui-ft: instruction fine-tuning of GPT-2-family models from the terminal."""

__version__ = "0.1.0"
