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


def json_object_line(line: str, where: str, what: str = "one label object", expected: str = "a JSON object") -> dict:
    """One JSONL line parsed as an object, or a one-line :class:`DataError` at ``where`` (``file:line``) saying that
    each line must be ``what`` (invalid JSON) or that ``expected`` was wanted (valid JSON, not an object)."""
    import json

    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: not valid JSON ({err.msg}); each line must be {what}") from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected {expected}, got {type(row).__name__}")
    return row
