"""A file the user names, read as UTF-8 text and bounded: no more than the limit is ever read, so `/dev/zero` or an
endless pipe is refused too. Shared by the command line's commands; it imports nothing heavy."""

from __future__ import annotations

from stroppy_domain.errors import StroppyError


class InputFileError(StroppyError, ValueError):
    """The file cannot be read, is larger than the limit, or is not UTF-8; the message names it and says why."""


def read_bounded(path: str, limit: int) -> str:
    """The UTF-8 text of the file at `path`, of at most `limit` bytes. Raises InputFileError otherwise."""
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except OSError as error:
        raise InputFileError(f"{path}: cannot read: {error}") from None
    if len(data) > limit:
        raise InputFileError(
            f"{path}: larger than the limit of {limit} bytes; raise the setting STROPPY_MAX_SUITE_BYTES for a larger "
            "file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InputFileError(
            f"{path}: not UTF-8 text: byte {data[error.start]:#04x} at byte offset {error.start} (line {line}): "
            f"{error.reason}"
        ) from None
