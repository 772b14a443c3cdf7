"""The one error type for model files that cannot be used; its message says why and what to do."""


class CheckpointError(ValueError):
    """A file that cannot serve as model weights; the message says why and what to do."""
