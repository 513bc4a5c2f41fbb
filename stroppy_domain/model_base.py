"""What every model of a suite shares: the base classes, the kinds of value (whole numbers, flags, ports, text) and
the enumerations. `stroppy_domain.model` re-exports all of it; import from there.

A suite's values are taken as written, never coerced: `true` is not a number, `"5"` is not a count, and no text
holds a control character (a NUL byte, a line break in a name, a path or a setting). What is refused is refused at
validation, with the path of the value, before anything renders it into a script or a configuration file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import Enum, StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
GUC_PATTERN = r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$"
BLOCK_NAME_PATTERN = r"^[a-z0-9-]+$"
RELEASE_PATTERN = r"^v?[0-9]{1,6}\.[0-9]{1,6}\.[0-9]{1,6}([-+][0-9A-Za-z.-]{1,64})?$"
COLLECTOR_PATTERN = r"^[a-z0-9_]+$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$"
REGION_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
URL_PATTERN = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"
_CRON_NUMBER = "[0-9]{1,2}"
_CRON_ITEM = rf"(\*|{_CRON_NUMBER}(-{_CRON_NUMBER})?)(/{_CRON_NUMBER})?"
_CRON_FIELD = rf"{_CRON_ITEM}(,{_CRON_ITEM})*"
CRON_PATTERN = rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$"
PATTERN_HINTS = {
    NAME_PATTERN: "must be 1-40 lowercase letters, digits or '-', starting and ending with a letter or digit",
    ENV_NAME_PATTERN: "must be an environment variable name (letters, digits, '_', not starting with a digit)",
    GUC_PATTERN: "must be a PostgreSQL setting name such as 'shared_buffers' or 'auto_explain.log_min_duration'",
    BLOCK_NAME_PATTERN: "must be a Prefect block name: lowercase letters, digits and '-'",
    RELEASE_PATTERN: "must be a release such as 'v5.0.0'",
    COLLECTOR_PATTERN: "must be a collector name: lowercase letters, digits and '_'",
    BUCKET_PATTERN: "must be a bucket name: lowercase letters, digits, '.' and '-'",
    REGION_PATTERN: "must be a region such as 'us-east-1'",
    URL_PATTERN: "must be an http:// or https:// URL",
    CRON_PATTERN: "must follow the cron pattern: five fields of numbers, ranges a-b, lists a,b, steps /n or *",
}
"""What a pattern means, in words; validation shows these instead of the regular expression."""
MAX_REPLICAS = 15
MAX_DEDICATED = 5

Location = tuple[str | int, ...]


def refusal(reason: str, location: Location, value: object) -> InitErrorDetails:
    """One refused value at `location` (relative to the value being validated), for `refuse`."""
    return InitErrorDetails(
        type=PydanticCustomError("refused", "{reason}", {"reason": reason}), loc=location, input=value
    )


def refuse(errors: list[InitErrorDetails], title: str = "value") -> None:
    """Raise the refusals in `errors` (if any) as one ValidationError: pydantic places each at its own location
    below the field being validated, such as the key of a map (`env.DRIVER_URL`)."""
    if errors:
        raise ValidationError.from_exception_data(title, errors)


class Model(BaseModel):
    """Every model of the project: unknown keys are an error, values never change once made."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_IN_FREE_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_BREAKS = "\n\r\u2028\u2029\x85"


def text_problem(text: str, free_text: bool = False) -> str | None:
    """Why `text` can never be a suite's value, or None when it can. Names, paths, URLs, settings and environment
    values are one line without control characters; free text (a description) may also hold line breaks and tabs."""
    found = (_CONTROL_IN_FREE_TEXT if free_text else _CONTROL).search(text)
    if found is None:
        return None
    char = found.group()
    kind = "a line break" if char in _LINE_BREAKS else "the NUL byte" if char == "\0" else "a control character"
    where = f"{kind} (U+{ord(char):04X}) at character {found.start() + 1}"
    if free_text:
        return f"must not contain control characters; found {where}"
    return f"must be a single line without control characters; found {where}"


def text_refusals(value: object, location: Location, free_text: bool) -> Iterator[InitErrorDetails]:
    """A refusal for every string in `value` (itself, or in the keys, values and items it holds) that
    `text_problem` refuses. Models are skipped: they check their own fields."""
    if isinstance(value, str) and not isinstance(value, Enum):
        problem = text_problem(value, free_text)
        if problem is not None:
            yield refusal(problem, location, value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield from text_refusals(key, (*location, key, "[key]"), free_text=False)
            yield from text_refusals(item, (*location, key), free_text)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from text_refusals(item, (*location, index), free_text)


class InputModel(Model):
    """A model read from what a user wrote (a suite, a settings file): every string of every field, map key and
    list item is checked by `text_problem`; the fields named in `FREE_TEXT` may span lines."""

    FREE_TEXT: ClassVar[frozenset[str]] = frozenset({"description"})

    @field_validator("*")
    @classmethod
    def _clean_text(cls, value: Any, info: ValidationInfo) -> Any:
        """Raises ValidationError naming each string of the field that holds a control character."""
        refuse(list(text_refusals(value, (), info.field_name in cls.FREE_TEXT)), cls.__name__)
        return value


def whole_number(value: object) -> object:
    """A count, port or size: booleans and fractions are refused; a whole float (`2.0` from a form, `1e2` in JSON)
    is taken as the integer it is.

    Raises ValueError for a boolean, text, a fraction or a float that is not finite."""
    if isinstance(value, bool):
        raise ValueError("expected a whole number, not a boolean (true/false)")
    if isinstance(value, str):
        raise ValueError("expected a whole number, not text; write it without quotes")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("expected a whole number")
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(whole_number), Field(strict=True)]
"""A whole number as written: `3`, or `3.0`; never `true`, `"3"` or `2.5`."""


def _flag(value: object) -> object:
    """Raises ValueError for anything but `true` or `false`."""
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


Flag = Annotated[bool, BeforeValidator(_flag), Field(strict=True)]
"""`true` or `false`; never `1`, `"yes"` or `"true"`."""
Port = Annotated[Integer, Field(ge=1, le=65535)]


class Target(StrEnum):
    DOCKER = "docker"
    YANDEX_CLOUD = "yandex_cloud"


class Isolation(StrEnum):
    """How a run's machines share the host of a target whose machines share one (Docker)."""

    EXCLUSIVE = "exclusive"
    SHARED = "shared"


DEFAULT_TARGET = Target.DOCKER
"""Where a suite's tests run when neither the suite nor the test names a target."""


WORKLOAD_PATTERN = r"^[a-z0-9_]{1,64}(/[a-z0-9_]{1,64})?$"
PGBENCH_WORKLOAD = "tpcb"


class StorageEngine(StrEnum):
    HEAP = "heap"
    ORIOLEDB = "orioledb"


class Scope(StrEnum):
    MASTER = "master"
    REPLICAS = "replicas"
    ALL_NODES = "all_nodes"
    REPLICA = "replica"


class PoolMode(StrEnum):
    SESSION = "session"
    TRANSACTION = "transaction"
    STATEMENT = "statement"


class Driver(StrEnum):
    STROPPY = "stroppy"
    PGBENCH = "pgbench"


class BackupTool(StrEnum):
    WAL_G = "wal_g"
    PG_DUMP = "pg_dump"
