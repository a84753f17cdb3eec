"""The eval stage's error type."""


class EvalError(RuntimeError):
    """A problem that stops the eval stage; the message says what and where."""
