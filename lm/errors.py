"""Typed errors of the lm package; each carries a one-line message meant for a user."""


class LmError(ValueError):
    """A user-facing error: bad input, a bad option value, a corpus too small."""


class CheckpointError(LmError):
    """A checkpoint that is missing, truncated, corrupt or not ours."""
