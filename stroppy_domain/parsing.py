"""Suite text -> plain data, with bounded work whatever the text says.

A suite may come from anyone, so parsing refuses what would make it expensive or ambiguous instead of trying:
control characters, YAML aliases beyond a small budget (an anchor bomb is refused after a few dozen aliases, never
expanded), nesting deeper than `MAX_DEPTH` (a clear issue, not a RecursionError), and duplicate keys (YAML and JSON
would silently keep the last one). JSON is parsed as JSON, so tab indentation and numbers such as `1e2` mean what
they mean there; YAML's flow style (`{name: s, tests: [...]}`) still parses as YAML.

Every refusal is an InvalidSuiteError with the path and, for text, the line and column; the work before it is bounded
by the size of the text (the command line limits that, `STROPPY_MAX_SUITE_BYTES`), never by what aliases expand to.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, Event, MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.resolver import Resolver

from stroppy_domain.errors import InvalidSuiteError, Issue, excerpt, join_path

MAX_DEPTH = 64
"""Collections inside collections; a suite needs about ten."""
MAX_ALIASES = 100
MAX_ALIAS_NODES = 10_000
"""Values that aliases may add to a document, counted as if each alias were written out in full."""
MAX_VALUES = 50_000
"""Values of one document (scalars and collections, aliases counted as written out). A test has about a hundred, and
the address spaces hold a few hundred tests per suite; the bound keeps any refusal well under a second."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
# C0 and C1 controls and DEL (tab, newline and carriage return are text), and the two non-characters YAML refuses.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_JSON_START = re.compile(r'[ \t\r\n]*(\[|\{[ \t\r\n]*["}])')


class _BudgetError(Exception):
    """Raised from inside the YAML loader to stop at the first unbounded construct; carries its issue."""

    def __init__(self, issue: Issue) -> None:
        super().__init__(str(issue))
        self.issue = issue


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"


class _BoundedComposer(Composer, SafeConstructor):
    """PyYAML's composer and safe constructor with the budgets of this module; the loaders below add a parser.

    PyYAML shares an aliased node instead of copying it, so an anchor bomb parses fast and explodes later, in
    whatever walks the data; here every alias is charged the size of what it stands for, as it is composed."""

    if TYPE_CHECKING:  # provided by the parser each loader adds

        def check_event(self, *choices: Any) -> bool: ...
        def peek_event(self) -> Any: ...

    def _init_budgets(self) -> None:
        self._path: list[str | int] = []
        self._depth = 0
        self._deepest = 0
        self._nodes = 0
        self._aliases = 0
        self._alias_nodes = 0
        self._anchor_sizes: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels of collections)
        self._open_anchors: set[str] = set()
        self.duplicates: list[Issue] = []

    def _refuse(self, message: str, event: Event) -> _BudgetError:
        return _BudgetError(Issue(join_path(*self._path), f"{message} ({_where(event.start_mark)})"))

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        # PyYAML passes a mapping value's key node as `index` (the stubs say int): it names the value's path.
        key: object = index
        pushed = isinstance(key, Node | int)
        if isinstance(key, Node):
            self._path.append(str(key.value) if isinstance(key, ScalarNode) else "?")
        elif isinstance(key, int):
            self._path.append(key)
        try:
            if self.check_event(AliasEvent):
                self._charge_alias(self.peek_event())
                return super().compose_node(parent, index)
            return self._compose_counted(parent, index)
        finally:
            if pushed:
                self._path.pop()

    def _charge_alias(self, event: AliasEvent) -> None:
        self._aliases += 1
        if self._aliases > MAX_ALIASES:
            raise self._refuse(f"more than {MAX_ALIASES} YAML aliases; write the values out", event)
        anchor = str(event.anchor)
        if anchor in self._open_anchors:
            raise self._refuse(f"alias *{anchor} is inside its own anchor, a structure without end", event)
        if anchor not in self._anchor_sizes:
            return  # PyYAML reports the undefined alias
        values, levels = self._anchor_sizes[anchor]
        self._alias_nodes += values
        if self._alias_nodes > MAX_ALIAS_NODES:
            raise self._refuse(
                f"YAML aliases expand to more than {MAX_ALIAS_NODES} values; write the values out", event
            )
        if self._depth + levels > MAX_DEPTH:
            raise self._refuse(f"alias *{anchor} nests collections more than {MAX_DEPTH} levels deep", event)
        self._count(values, event)
        self._deepest = max(self._deepest, self._depth + levels)

    def _count(self, values: int, event: Event) -> None:
        self._nodes += values
        if self._nodes > MAX_VALUES:
            raise self._refuse(f"more than {MAX_VALUES} values in one document", event)

    def _compose_counted(self, parent: Node | None, index: int) -> Node | None:
        event: Event = self.peek_event()
        outer_depth, outer_deepest, first_node = self._depth, self._deepest, self._nodes
        if isinstance(event, SequenceStartEvent | MappingStartEvent):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise self._refuse(f"collections nested more than {MAX_DEPTH} levels deep", event)
        self._count(1, event)
        self._deepest = self._depth
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open_anchors.add(anchor)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self._open_anchors.discard(anchor)
            self._anchor_sizes[anchor] = (self._nodes - first_node, self._deepest - outer_depth)
        self._depth = outer_depth
        self._deepest = max(outer_deepest, self._deepest)
        return node

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: set[object] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # a merge key may repeat, and keys that are collections cannot be hashed anyway
            key = self.construct_object(key_node)
            if key in seen:
                self.duplicates.append(
                    Issue(
                        join_path(*self._path),
                        f"duplicate key {excerpt(key)} (line {key_node.start_mark.line + 1}); "
                        "the later value would silently replace the earlier",
                    )
                )
            seen.add(key)
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except ValueError as error:  # an integer of thousands of digits, a date such as 2024-02-30
            raise ConstructorError(None, None, f"cannot read this value: {error}", node.start_mark) from None


class BoundedLoader(_BoundedComposer, yaml.SafeLoader):
    """`yaml.SafeLoader` with alias, depth and duplicate-key budgets; pure Python, used without libyaml."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._init_budgets()


Loader = Callable[[str], _BoundedComposer]
LIBYAML_LOADER: Loader | None = None
"""What `parse_document` reads YAML with when PyYAML has libyaml (its wheels do); without it, `BoundedLoader`."""
if yaml.__with_libyaml__:  # pragma: no branch - libyaml ships in PyYAML's wheels
    from yaml._yaml import CParser

    class _LibyamlBoundedLoader(_BoundedComposer, CParser, Resolver):
        """The same budgets over libyaml's parser: the events come from C, about five times faster, while
        composing (where the budgets are) and constructing stay the Python code of `BoundedLoader`."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._init_budgets()

    LIBYAML_LOADER = _LibyamlBoundedLoader


def _yaml_data(text: str, loader: Loader | None) -> Any:
    """Raises _BudgetError, yaml.YAMLError, and InvalidSuiteError for duplicate keys (every one)."""
    instance = cast(Any, (loader or LIBYAML_LOADER or BoundedLoader)(text))
    try:
        node = instance.get_single_node()
        if instance.duplicates:
            raise InvalidSuiteError(instance.duplicates)
        return None if node is None else instance.construct_document(node)
    finally:
        instance.dispose()


def load_yaml(text: str, source: str = "", loader: Loader | None = None) -> Any:
    """YAML text -> data within the budgets; raises InvalidSuiteError for a syntax error (with line and column),
    an alias or nesting beyond the budgets, or duplicate keys (every one, each with the path of its mapping)."""
    try:
        return _yaml_data(text, loader)
    except _BudgetError as refusal:
        raise InvalidSuiteError([refusal.issue], source) from None
    except InvalidSuiteError as duplicates:
        raise InvalidSuiteError(duplicates.issues, source) from None
    except yaml.YAMLError as error:
        raise InvalidSuiteError([_yaml_syntax_issue(error, text)], source) from None


def _yaml_syntax_issue(error: yaml.YAMLError, text: str) -> Issue:
    mark = getattr(error, "problem_mark", None)
    position = getattr(error, "position", None)  # a reader error has an offset instead of a mark
    if mark is None and isinstance(position, int):
        line = text.count("\n", 0, position)
        where = f"line {line + 1}, column {position - text.rfind(chr(10), 0, position)}: "
    else:
        where = f"{_where(mark)}: " if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    return Issue("", f"not valid YAML or JSON: {where}{f'{context}: ' if context else ''}{problem}")


class _DuplicatedKeys(dict[str, Any]):
    """A JSON object in which some key appeared more than once; `duplicates` names those keys."""

    duplicates: list[str]


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping = dict(pairs)
    if len(mapping) == len(pairs):
        return mapping
    flagged = _DuplicatedKeys(mapping)
    flagged.duplicates = []
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            flagged.duplicates.append(key)
        seen.add(key)
    return flagged


def _json_int(text: str) -> int:
    # Python refuses longer digit strings with a message about its own settings; this one is in suite terms.
    limit = sys.get_int_max_str_digits()
    if 0 < limit < len(text.lstrip("-")):
        raise ValueError(f"a number has more than {limit} digits")
    return int(text)


def _json_data(text: str, source: str) -> Any:
    """Raises json.JSONDecodeError for a syntax error, InvalidSuiteError for the rest."""
    try:
        data = json.loads(text, object_pairs_hook=_json_object, parse_int=_json_int)
    except RecursionError:  # the C decoder recurses per level; the limit is far below the interpreter's
        raise InvalidSuiteError([Issue("", f"collections nested more than {MAX_DEPTH} levels deep")], source) from None
    except json.JSONDecodeError:
        raise
    except ValueError as error:
        raise InvalidSuiteError([Issue("", f"not valid YAML or JSON: {error} (read as JSON)")], source) from None
    issues = data_issues(data)
    if issues:
        raise InvalidSuiteError(issues, source)
    return data


def parse_document(text: str, source: str = "") -> Any:
    """YAML or JSON text -> plain data, within the budgets of this module.

    JSON is a text that starts with `[`, or with `{` followed by `"` or `}` (whitespace aside): what no JSON document
    can avoid and YAML's flow style (`{name: s, ...}`) does not do, which stays YAML. Raises InvalidSuiteError for
    control characters, a syntax error (line and column), aliases or nesting beyond the budgets, and duplicate keys."""
    text = text.removeprefix("\ufeff")
    control = _CONTROL.search(text)
    if control is not None:
        raise InvalidSuiteError([_control_issue(text, control)], source)
    if _JSON_START.match(text) is None:
        return load_yaml(text, source)
    try:
        return _json_data(text, source)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise InvalidSuiteError(
            [Issue("", f"not valid YAML or JSON: {where}: {error.msg} (read as JSON)")], source
        ) from None


def _control_issue(text: str, control: re.Match[str]) -> Issue:
    position = control.start()
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    count = len(_CONTROL.findall(text))
    more = f"; {count} in all" if count > 1 else ""
    return Issue(
        "",
        f"line {line}, column {column}: control character {control.group()!r} is not allowed "
        f"(only tab, newline and carriage return are){more}",
    )


_COLLECTIONS = (dict, list, tuple, set, frozenset)
_Trail = tuple[Any, str | int] | None
"""A path as a chain (parent trail, key), so walking a wide document does not copy paths."""


def _path_of(trail: _Trail) -> str:
    parts: list[str | int] = []
    while trail is not None:
        trail, key = trail
        parts.append(key)
    return join_path(*reversed(parts))


def data_issues(data: Any) -> list[Issue]:
    """What makes parsed data too deep or too large to validate, and JSON objects with duplicate keys.

    Walks the data as a tree, so shared parts (a Python caller's, or YAML aliases) count once per use, and a
    structure that contains itself ends at the depth limit. Values count as in a YAML document: a key and its value
    are two."""
    issues: list[Issue] = []
    stack: list[tuple[Any, _Trail, int]] = [(data, None, 1)]
    values = 1
    while stack:
        value, trail, depth = stack.pop()
        if depth > MAX_DEPTH:
            return [*issues, Issue(_path_of(trail), f"collections nested more than {MAX_DEPTH} levels deep")]
        if isinstance(value, _DuplicatedKeys):
            issues += [
                Issue(
                    _path_of(trail), f"duplicate key {excerpt(key)}; the later value would silently replace the earlier"
                )
                for key in value.duplicates
            ]
        values += len(value) * (2 if isinstance(value, dict) else 1) if isinstance(value, _COLLECTIONS) else 0
        if values > MAX_VALUES:
            return [*issues, Issue(_path_of(trail), f"more than {MAX_VALUES} values in one document")]
        push = stack.append
        if isinstance(value, dict):
            for key, child in value.items():
                if isinstance(child, _COLLECTIONS):
                    push((child, (trail, str(key)), depth + 1))
        elif isinstance(value, _COLLECTIONS):
            for index, child in enumerate(value):
                if isinstance(child, _COLLECTIONS):
                    push((child, (trail, index), depth + 1))
    return issues
