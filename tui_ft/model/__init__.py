"""Our GPT-2: architecture, presets, weights, generation. Imports torch."""
