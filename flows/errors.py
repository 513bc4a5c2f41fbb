"""Errors of the operating commands, worded for the terminal; light to import, so the CLI can always catch them."""

from __future__ import annotations

from stroppy_domain.errors import StroppyError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


class OperateError(StroppyError):
    """An installation or a suite could not be operated as asked; exit code 1."""
