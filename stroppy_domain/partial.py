"""What is left of a model that did not validate: its fields that are valid on their own.

The rules between fields (validation.py) are written for valid models. Given a stand-in from `salvaged` instead,
they run unchanged on the fields that validated, and a rule that reads a field that did not raises `Unknown`,
which `guarded` turns into "nothing to report". So a type error in one field does not hide the problems between
the others: they are reported together, each with its path.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from stroppy_domain.errors import Issue

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class Unknown(Exception):  # noqa: N818 - not an error: the value a rule asked for is not known
    """A rule read a field whose value did not validate; the rule has nothing to say."""


def guarded(rule: Callable[[], Iterable[Issue]]) -> Iterator[Issue]:
    """The issues of `rule`, or of its part before it read a field that did not validate."""
    try:
        yield from rule()
    except Unknown:
        return


def known(read: Callable[[], T]) -> T | None:
    """What `read` returns, or None when it reads a field that did not validate."""
    try:
        return read()
    except Unknown:
        return None


def salvaged(model: type[M], raw: object) -> M:
    """`raw` validated as `model` when it is valid; else a stand-in typed as the model, whose valid fields read as
    they would on the model and whose broken ones raise Unknown (or, for a mapping or a list of mappings meant as
    models, are stand-ins themselves). Properties of the model work on it too."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        broken = {str(detail["loc"][0]) for detail in error.errors() if detail["loc"]}
        whole = not any(detail["loc"] for detail in error.errors())  # `raw` itself is wrong, e.g. not a mapping
        return cast(M, _Salvaged(model, raw if isinstance(raw, dict) and not whole else None, broken))


def field_value(model: type[BaseModel], name: str, raw: object) -> Any:
    """The value of one field of `model` read from the mapping `raw` as the model would read it (its default when
    absent); raises Unknown when `raw` is not a mapping, or the value does not validate."""
    if not isinstance(raw, dict):
        raise Unknown(name)
    field = model.model_fields[name]
    key = field.alias if field.alias is not None and field.alias in raw else name
    if key not in raw:
        if field.is_required():
            raise Unknown(name)
        return field.get_default(call_default_factory=True)
    try:
        return _adapter(model, name).validate_python(raw[key])
    except ValidationError:
        raise Unknown(name) from None


@functools.cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    field = model.model_fields[name]
    # The field's own type with its constraints and validators, as the model would apply them to this value.
    annotated: Any = typing.Annotated[field.annotation, field]
    return TypeAdapter(annotated)


class _Salvaged:
    def __init__(self, model: type[BaseModel], raw: dict[str, Any] | None, broken: set[str]) -> None:
        self._model = model
        self._raw = raw
        self._broken = broken

    def __getattr__(self, name: str) -> Any:
        field = self._model.model_fields.get(name)
        if field is None:
            attribute = getattr(self._model, name, None)
            if isinstance(attribute, property) and attribute.fget is not None:
                return attribute.fget(self)
            raise AttributeError(name)
        if self._raw is None:
            raise Unknown(name)
        key = field.alias if field.alias is not None and field.alias in self._raw else name
        if key not in self._broken:
            return field_value(self._model, name, self._raw)
        value = self._raw.get(key)
        inner = unwrap(field.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel) and isinstance(value, dict):
            return salvaged(inner, value)
        item = unwrap(typing.get_args(inner)[0]) if typing.get_origin(inner) is list else None
        if isinstance(item, type) and issubclass(item, BaseModel) and isinstance(value, list):
            return [salvaged(item, element) for element in value]
        raise Unknown(name)


def unwrap(annotation: Any) -> Any:
    """Strip `Annotated[...]` and `X | None`, which say nothing about which keys a model takes."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in {typing.Union, types.UnionType}:
            options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation
