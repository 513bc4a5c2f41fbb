"""`stroppy-flows regressions --input FILE`: the verdict on the last run of each history in a JSON file, offline.

It imports the domain's regression module and nothing of the orchestration (no Prefect), so a thousand histories are
judged in about the time the interpreter and SciPy take to start.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import TypeAdapter, ValidationError

from flows.input_files import InputFileError, read_bounded
from stroppy_domain.errors import REPORT_CHARS, Issue, join_path, printable
from stroppy_domain.regression import History, judge_history

EXIT_NO_REGRESSION = 0
EXIT_REGRESSION = 1
EXIT_INVALID = 2

_HISTORIES = TypeAdapter(list[History])


class _BadInputError(Exception):
    """The input cannot be judged; each argument is one problem, already worded for the user."""


def regressions(input_path: str, max_bytes: int) -> int:
    """Print the verdict (or, for a list of histories, the list of verdicts) as JSON on stdout, and return 1 when any
    verdict is a regression, else 0. Bad input (unreadable, over `max_bytes`, not JSON, not a valid history) prints
    each problem with its path to stderr and returns 2."""
    try:
        document = _parse(read_bounded(input_path, max_bytes), input_path)
        verdicts = [judge_history(history) for history in _validate(document)]
    except InputFileError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID
    except _BadInputError as error:
        for problem in error.args:
            print(problem, file=sys.stderr)
        return EXIT_INVALID
    output = [verdict.model_dump(mode="json") for verdict in verdicts]
    print(json.dumps(output if isinstance(document, list) else output[0], indent=2))
    return EXIT_REGRESSION if any(verdict.verdict == "regression" for verdict in verdicts) else EXIT_NO_REGRESSION


def _parse(text: str, path: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise _BadInputError(f"{path}: not JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    except RecursionError:
        raise _BadInputError(f"{path}: not JSON this command reads: nested too deeply") from None


def _validate(document: Any) -> list[History]:
    """The histories of `document`: one history object, or a list of them."""
    try:
        if isinstance(document, list):
            return _HISTORIES.validate_python(document)
        if isinstance(document, dict):
            return [History.model_validate(document)]
    except ValidationError as error:
        raise _BadInputError(*_problems(error)) from None
    raise _BadInputError("input: expected a history object or a list of history objects")


def _problems(error: ValidationError) -> list[str]:
    """One line per problem, `[2].runs[3].value: ...`, cut to `REPORT_CHARS` in all."""
    lines: list[str] = []
    room = REPORT_CHARS
    details = error.errors()
    for detail in details:
        message = "required field is missing" if detail["type"] == "missing" else detail["msg"]
        issue = Issue(join_path(*detail["loc"]) or "input", message.removeprefix("Value error, "), detail["input"])
        line = printable(str(issue), REPORT_CHARS)
        if len(line) > room:
            lines.append(f"... and {len(details) - len(lines)} more")
            break
        lines.append(line)
        room -= len(line) + 1
    return lines
