"""Durations as k6 and stroppy users write them: `90s`, `5m`, `1h30m`, or a number of seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema

_DURATION = re.compile(r"^(?:([0-9]{1,9})h)?(?:([0-9]{1,9})m)?(?:([0-9]{1,9})s)?$")
MAX_SECONDS = 366 * 24 * 3600
"""The longest duration a suite may give anything: a year (and a day)."""


def parse_duration(text: str) -> int:
    """Seconds in `text` (ASCII digits, spaces around it allowed); raises ValueError with the accepted forms when it
    is not a duration."""
    match = _DURATION.fullmatch(text.strip(" "))
    if match is None or not any(match.groups()):
        raise ValueError("expected a duration such as '90s', '5m' or '1h30m'")
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _to_seconds(value: object) -> object:
    """A duration as written (`5m`, or a whole number of seconds such as `300` or `300.0`) -> seconds.

    Raises ValueError for a boolean, a fraction, text that is not a duration, and a duration that is not positive
    or longer than `MAX_SECONDS`."""
    if isinstance(value, bool):
        raise ValueError("expected a duration, not a boolean")
    if isinstance(value, str):
        value = parse_duration(value)
    elif isinstance(value, float):
        if not value.is_integer():
            raise ValueError("expected a duration in whole seconds")
        value = int(value)
    if isinstance(value, int) and not 0 < value <= MAX_SECONDS:
        raise ValueError(f"a duration must be more than 0 seconds and at most {MAX_SECONDS // 3600}h")
    return value


Seconds = Annotated[
    int,
    BeforeValidator(_to_seconds),
    Field(strict=True),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "pattern": _DURATION.pattern}]}),
]
"""A duration field: accepts `5m` or `300` and stores seconds; its schema admits both forms (the Prefect UI form)."""
