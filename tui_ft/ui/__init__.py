"""The Textual shell over the engine: renders engine state, sends engine commands."""
