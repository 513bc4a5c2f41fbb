"""The project's error family: one root, `StroppyError`, whose `retryable` says whether trying again can help;
and the suite errors, which carry the path of the offending field so the user can find it in a suite file."""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_MISSING = object()

EXCERPT_CHARS = 80
"""Characters of an offending value an error shows: enough to recognise it, never a whole 50 MB value."""
PATH_CHARS = 200
MESSAGE_CHARS = 400
MAX_REPORTED_ISSUES = 50
MAX_COLLECTED_ISSUES = 1000
"""Problems validation looks for in one suite; past them it stops looking (and counts what it has not listed), so a
file of thousands of broken tests is refused as fast as one."""
REPORT_CHARS = 8000
"""Issue lines of one error, at most: a refusal of any input prints well under 10 KB."""

_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = EXCERPT_CHARS
_REPR.maxother = EXCERPT_CHARS
_REPR.maxlong = EXCERPT_CHARS
for _limit in ("maxdict", "maxlist", "maxtuple", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
    setattr(_REPR, _limit, 4)


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A `repr` of `value` in about `limit` characters, however large it is: longer text is cut and its length
    named, collections show their first items only (and are not walked further, so shared or cyclic data is cheap)."""
    if isinstance(value, str):
        shown = repr(value[:limit])
        if len(value) <= limit and len(shown) <= limit + 2:
            return shown
        return f"{shown[:limit]}…({len(value)} characters)"
    try:
        shown = _REPR.repr(value)
    except ValueError:  # an integer too long for Python to print
        shown = f"<{type(value).__name__}>"
    return shown if len(shown) <= limit else f"{shown[:limit]}…"


def printable(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with control and other unprintable characters escaped, so a key or message
    taken from a suite cannot move the cursor, recolour or rewrite the terminal it is printed on."""
    cut = text[:limit]
    if not cut.isprintable():
        cut = "".join(char if char.isprintable() else repr(char)[1:-1] for char in cut)
    return cut if len(text) <= limit else f"{cut}…({len(text)} characters)"


class StroppyError(Exception):
    """Root of every error this project raises. `retryable` is True only when the same call, made again, may
    succeed (a timeout, a refused connection, a server error); a bad input or a refused credential never is."""

    retryable: bool = False

    def __init__(self, message: str = "", *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class TransientError(StroppyError):
    """A failure of something outside that a retry can fix: unreachable, timed out, overloaded."""

    retryable = True


@dataclass(frozen=True)
class Issue:
    """One problem of a suite: where it is, what is wrong, and the value found there (if any)."""

    path: str
    message: str
    value: object = _MISSING

    def has_value(self) -> bool:
        return self.value is not _MISSING

    def __str__(self) -> str:
        where = printable(self.path, PATH_CHARS) or "<suite>"
        message = printable(self.message, MESSAGE_CHARS)
        if self.has_value():
            return f"{where}: {message} (got {excerpt(self.value)})"
        return f"{where}: {message}"


class InvalidSuiteError(StroppyError, ValueError):
    """A suite that cannot be run; `issues` lists every problem found, not only the first, and `unlisted` counts the
    problems found beyond those (see `MAX_COLLECTED_ISSUES`). Its message shows the first `MAX_REPORTED_ISSUES` in at
    most `REPORT_CHARS` characters, and how many more there are."""

    def __init__(self, issues: Sequence[Issue], source: str = "", unlisted: int = 0) -> None:
        self.issues = tuple(issues)
        self.source = source
        self.unlisted = unlisted
        header = f"{printable(source, PATH_CHARS)}: " if source else ""
        count = len(self.issues) + unlisted
        lines = [f"{header}{count} problem{'s' if count != 1 else ''} found"]
        room = REPORT_CHARS
        for issue in self.issues[:MAX_REPORTED_ISSUES]:
            line = f"  - {issue}"
            if len(line) > room:
                break
            lines.append(line)
            room -= len(line) + 1
        if len(lines) - 1 < count:
            lines.append(f"  ... and {count - len(lines) + 1} more")
        super().__init__("\n".join(lines))


class PlanningError(StroppyError, ValueError):
    """The planner found a topology it cannot lay out; it names the field that causes it."""

    def __init__(self, path: str, message: str, value: object = _MISSING) -> None:
        self.issue = Issue(path, message, value)
        super().__init__(str(self.issue))


def join_path(*parts: str | int) -> str:
    """Render path parts the way users write them: `tests[1].database.cluster`."""
    rendered = ""
    for part in parts:
        if isinstance(part, int):
            rendered += f"[{part}]"
        elif rendered:
            rendered += f".{part}"
        else:
            rendered = str(part)
    return rendered


def sorted_issues(issues: Iterable[Issue]) -> list[Issue]:
    """Deduplicated issues in a stable order, so the same suite always prints the same report."""
    unique = {(issue.path, issue.message, repr(issue.value)): issue for issue in issues}
    return [unique[key] for key in sorted(unique, key=lambda key: (_natural(key[0]), key))]


def _natural(path: str) -> tuple[str | int, ...]:
    """`tests[2]` before `tests[10]`: the numbers in a path compared as numbers (text and numbers alternate)."""
    return tuple(int(part) if index % 2 else part for index, part in enumerate(re.split(r"(\d+)", path)))
