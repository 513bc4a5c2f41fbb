"""Configuration text kept as files under `templates/` and filled in with `string.Template`.

Placeholders are `$name`; a literal dollar sign, as in shell variables, is written `$$`. Rendering demands that
the values match the template's placeholders exactly, so a renamed placeholder or a forgotten value fails at once
instead of leaving a `$name` in a script.
"""

from __future__ import annotations

import functools
from importlib import resources
from importlib.resources.abc import Traversable
from string import Template

TEMPLATE_PACKAGE = "stroppy_domain.services"
TEMPLATE_DIRECTORY = "templates"


def template_files() -> list[Traversable]:
    """Every template file shipped with the package."""
    directory = resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_DIRECTORY)
    return sorted((entry for entry in directory.iterdir() if entry.is_file()), key=lambda entry: entry.name)


@functools.cache
def load_template(name: str) -> Template:
    """The template called `name` in `templates/`."""
    text = resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_DIRECTORY, name).read_text(encoding="utf-8")
    return Template(text)


def render_template(name: str, **values: object) -> str:
    """The template `name` with every placeholder replaced by its value, formatted as an f-string would.

    Raises KeyError for a placeholder without a value and ValueError for a value without a placeholder or a
    stray `$`.
    """
    template = load_template(name)
    unused = set(values) - set(template.get_identifiers())
    if unused:
        raise ValueError(f"template {name} has no placeholder for {', '.join(sorted(unused))}")
    return template.substitute({key: format(value) for key, value in values.items()})
