"""User-facing errors: the CLI prints ``error: <message>`` on one line and exits non-zero, without a traceback.

Raise one whenever the user can fix the problem (bad path, unknown name, malformed file); the message names the
problem and the fix.
"""


class HarnessError(Exception):
    """A problem with the user's input or environment, reported as one line."""


class CheckpointError(HarnessError):
    """``--ckpt`` names something that is missing, corrupt or of an unsupported kind."""


class DataError(HarnessError):
    """A prompt, metadata or image file is missing or malformed."""
