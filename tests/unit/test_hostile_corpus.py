"""The hostile-input corpus (tests/data/hostile/<area>/): every malformed suite is refused by `validate` and by
`plan` alike with exit 2, naming the path of what is wrong, with no traceback and a short message.

Each area's `expected.yaml` maps a file name to the path (or text) its refusal must name. How long each refusal
takes is measured by `benchmarks/hostile_corpus.py`, not here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.cli import main
from tests.conftest import EXAMPLES

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hostile"
MAX_OUTPUT = 10_000


def corpus() -> list[tuple[Path, str]]:
    cases = []
    for expected_file in sorted(CORPUS.glob("*/expected.yaml")):
        expected = yaml.safe_load(expected_file.read_text())
        files = {path.name for path in expected_file.parent.iterdir() if path.name != "expected.yaml"}
        assert files == set(expected), f"{expected_file}: every file has an expectation and every expectation a file"
        cases += [(expected_file.parent / name, str(path)) for name, path in sorted(expected.items())]
    return cases


CASES = corpus()


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 150


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("suite", "expected"), CASES, ids=[f"{p.parent.name}/{p.name}" for p, _ in CASES])
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_a_malformed_suite_is_refused_naming_its_path(
    suite: Path, expected: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, str(suite)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert len(out) + len(err) < MAX_OUTPUT, f"{len(out) + len(err)} characters of output"
    assert expected in err, err[:2000]


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_validate_and_plan_agree_on_every_example(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(example)]) == 0
    assert main(["plan", str(example)]) == 0
    capsys.readouterr()
