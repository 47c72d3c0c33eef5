"""The one exception type for bad user input: the CLI prints its message and exits non-zero."""


class MedalsError(Exception):
    """A user-facing error: one sentence naming the file, column, key or value at fault."""
