"""Durations as k6 and stroppy users write them: `90s`, `5m`, `1h30m`, or a number of seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> int:
    """Seconds in `text`; raises ValueError with the accepted forms when it is not a duration."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError("expected a duration such as '90s', '5m' or '1h30m'")
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _to_seconds(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("expected a duration, not a boolean")
    if isinstance(value, str):
        return parse_duration(value)
    return value


Seconds = Annotated[
    int,
    BeforeValidator(_to_seconds),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "pattern": _DURATION.pattern}]}),
]
"""A duration field: accepts `5m` or `300` and stores seconds; its schema admits both forms (the Prefect UI form)."""
