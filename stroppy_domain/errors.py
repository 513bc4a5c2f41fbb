"""The project's error family: one root, `StroppyError`, whose `retryable` says whether trying again can help;
and the suite errors, which carry the path of the offending field so the user can find it in a suite file."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_MISSING = object()


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
        where = self.path or "<suite>"
        if self.has_value():
            return f"{where}: {self.message} (got {self.value!r})"
        return f"{where}: {self.message}"


class InvalidSuiteError(StroppyError, ValueError):
    """A suite that cannot be run; `issues` lists every problem found, not only the first."""

    def __init__(self, issues: Sequence[Issue], source: str = "") -> None:
        self.issues = tuple(issues)
        self.source = source
        header = f"{source}: " if source else ""
        count = len(self.issues)
        lines = [f"{header}{count} problem{'s' if count != 1 else ''} found"]
        lines += [f"  - {issue}" for issue in self.issues]
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
    return [unique[key] for key in sorted(unique)]
