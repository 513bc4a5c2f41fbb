"""`flows.regressions_command.regressions`: a JSON file of histories in, verdicts as JSON out, the exit code saying
whether any is a regression (1), none is (0), or the input is bad (2, with the path of each problem)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows import cli
from flows.regressions_command import regressions

START = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
STEADY = [1000, 1010, 990, 1005, 995, 1000, 1002, 998]
LIMIT = 1_000_000


def history(values: list[float], tolerance: float = 5) -> dict[str, Any]:
    return {
        "metric": "tps",
        "tolerance_percent": tolerance,
        "runs": [
            {"run_id": f"r{index}", "started_at": (START + timedelta(hours=index)).isoformat(), "value": value}
            for index, value in enumerate(values)
        ],
    }


REGRESSION = history([*STEADY, 900, 905, 895])
STABLE = history([*STEADY, 1001])
EMPTY = history([])


def run(tmp_path: Path, document: object, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    path = tmp_path / "histories.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    code = regressions(str(path), LIMIT)
    out, err = capsys.readouterr()
    return code, json.loads(out) if out else None, err


@pytest.mark.parametrize(
    ("document", "code", "verdicts"),
    [
        pytest.param(REGRESSION, 1, "regression", id="one-history-regressed"),
        pytest.param(STABLE, 0, "no_change", id="one-history-stable"),
        pytest.param(EMPTY, 0, "insufficient_history", id="empty-runs"),
        pytest.param(
            [STABLE, REGRESSION, EMPTY],
            1,
            ["no_change", "regression", "insufficient_history"],
            id="list-with-a-regression",
        ),
        pytest.param([STABLE, EMPTY], 0, ["no_change", "insufficient_history"], id="list-without-a-regression"),
        pytest.param([], 0, [], id="empty-list"),
    ],
)
def test_the_verdicts_and_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: object, code: int, verdicts: str | list[str]
) -> None:
    exit_code, output, err = run(tmp_path, document, capsys)
    found = [item["verdict"] for item in output] if isinstance(output, list) else output["verdict"]
    assert (exit_code, found, err) == (code, verdicts, "")


def test_the_output_of_a_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, output, _ = run(tmp_path, REGRESSION, capsys)
    assert set(output) == {
        "metric",
        "verdict",
        "change_percent",
        "change_started_at_run",
        "baseline",
        "p_value",
        "reason",
    }
    assert (output["metric"], output["change_percent"], output["change_started_at_run"], output["baseline"]) == (
        "tps",
        -10.0,
        "r8",
        {"runs": 8, "median": 1000.0, "first_run": "r0", "last_run": "r7"},
    )


def test_an_empty_history_says_insufficient_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, output, _ = run(tmp_path, EMPTY, capsys)
    assert output == {
        "metric": "tps",
        "verdict": "insufficient_history",
        "change_percent": None,
        "change_started_at_run": None,
        "baseline": {"runs": 0, "median": None, "first_run": None, "last_run": None},
        "p_value": None,
        "reason": "0 run(s); judging the last one needs at least 3 before it",
    }


def broken_run(change: dict[str, Any]) -> dict[str, Any]:
    broken = history([*STEADY, 1001])
    broken["runs"][3] = {**broken["runs"][3], **change}
    return broken


@pytest.mark.parametrize(
    ("document", "problems"),
    [
        pytest.param(
            [STABLE, STABLE, broken_run({"value": "fast"})],
            ["[2].runs[3].value: Input should be a valid number (got 'fast')"],
            id="bad-value-in-the-third-history",
        ),
        pytest.param(
            [STABLE, broken_run({"started_at": "2026-04-01T00:00:00Z"})],
            [
                "[1].runs[3].started_at: runs must be in time order, oldest first; this one started before runs[2] "
                "(2026-05-01T04:00:00+00:00) (got '2026-04-01T00:00:00+00:00')"
            ],
            id="out-of-order",
        ),
        pytest.param(
            {**STABLE, "tolerance_percent": 0, "extra": True},
            [
                "tolerance_percent: Input should be greater than 0 (got 0)",
                "extra: Extra inputs are not permitted (got True)",
            ],
            id="two-problems-at-the-top",
        ),
        pytest.param(
            {"metric": "tps", "runs": []},
            ["tolerance_percent: required field is missing (got {'metric': 'tps', 'runs': []})"],
            id="missing-field",
        ),
        pytest.param(42, ["input: expected a history object or a list of history objects"], id="not-a-history"),
        pytest.param(
            [42], ["[0]: Input should be a valid dictionary or instance of History (got 42)"], id="list-of-numbers"
        ),
        pytest.param("{", None, id="not-json"),
    ],
)
def test_bad_input_exits_2_naming_each_problem_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: object, problems: list[str] | None
) -> None:
    code, output, err = run(tmp_path, document, capsys)
    path = tmp_path / "histories.json"
    expected = problems or [f"{path}: not JSON: Expecting property name enclosed in double quotes at line 1, column 2"]
    assert (code, output, err.splitlines()) == (2, None, expected)


def test_a_file_over_the_limit_is_refused_unread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(STABLE))
    assert regressions(str(path), 100) == 2
    assert capsys.readouterr().err.startswith(f"{path}: larger than the limit of 100 bytes; raise the setting")


def test_a_missing_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert regressions(str(tmp_path / "absent.json"), LIMIT) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"{tmp_path / 'absent.json'}: cannot read: [Errno 2] No such file or directory: "
                              f"'{tmp_path / 'absent.json'}'\n")  # fmt: skip


def test_a_file_that_is_not_utf8_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"metric": "t\xe9"}')
    assert regressions(str(path), LIMIT) == 2
    expected = f"{path}: not UTF-8 text: byte 0xe9 at byte offset 13 (line 1): invalid continuation byte\n"
    assert capsys.readouterr() == ("", expected)


def test_the_command_line_runs_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "histories.json"
    path.write_text(json.dumps([STABLE, REGRESSION]))
    assert cli.main(["regressions", "--input", str(path)]) == 1
    assert [verdict["verdict"] for verdict in json.loads(capsys.readouterr().out)] == ["no_change", "regression"]
    path.write_text(json.dumps(STABLE))
    assert cli.main(["regressions", "--input", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "no_change"
