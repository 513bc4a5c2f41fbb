"""How long `validate` takes to refuse each malformed suite of the hostile-input corpus (tests/data/hostile/).

    uv run --frozen python benchmarks/hostile_corpus.py [--area parsing] [--repeat 3] [--synthetic] [--pure-python]

Every file is validated in-process with `flows.cli.main(["validate", FILE])`, as the command line does it, with its
output captured. Reported per file: the exit code and the fastest of `--repeat` runs; then the slowest and the median.
`--synthetic` adds inputs just under the size limit (STROPPY_MAX_SUITE_BYTES, 1 MiB by default) and just under the
budget of values per document, written to a temporary directory: the corpus files are small, these show the worst
the limits allow. `--pure-python` parses YAML
without libyaml. The issue asks every refusal to end in under a second (`--budget`); the exit status is 1 when one
does not, or when a file is not refused with exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from flows.cli import main as cli_main
from infra.settings import OrchestrationSettings
from stroppy_domain import parsing

CORPUS = REPOSITORY / "tests" / "data" / "hostile"


def synthetic(directory: Path, limit: int) -> Iterator[Path]:
    """Malformed suites just under `limit` bytes, one per way of making the parser or the validator work hard."""
    test = '  - {name: "T", stroppy: {scale: x}}\n'
    # Each test above is 7 values (a mapping, 3 keys, 3 values); a key and its value are 2.
    under_budget = (parsing.MAX_VALUES - 10) // 7
    existing = {"stroppy": {"version": "v5.0.0"}, "database": {"existing": {"connection_string": "postgres://u@h/d"}}}
    cases = {
        "many-broken-tests.yaml": "name: s\ntests:\n" + test * ((limit - 20) // len(test)),
        "broken-tests-just-under-the-value-budget.yaml": "name: s\ntests:\n" + test * under_budget,
        "unknown-keys-just-under-the-value-budget.yaml": "".join(
            f"k{index}: {index}\n" for index in range(under_budget * 3)
        ),
        "duplicates-just-under-the-value-budget.yaml": "name: s\n" * (under_budget * 3),
        "broken-json-tests-just-under-the-value-budget.json": json.dumps(
            {"name": "s", "tests": [{"name": "T", "stroppy": {"scale": "x"}}] * under_budget}
        ),
        "one-long-value.yaml": "name: s\ntests: []\ndescription: " + "x" * (limit - 40) + "\n",
        "one-long-key.json": '{"name": "s", "tests": [], "' + "k" * (limit - 50) + '": 1}',
        "deep-flow.yaml": "name: s\ntests: " + "[" * (limit - 20),
        "deep-json.json": "[" * (limit - 1),
        "many-unknown-keys.yaml": "".join(f"k{index}: {index}\n" for index in range(limit // 16)),
        "many-duplicate-keys.yaml": "name: s\n" * (limit // 8),
        "too-many-tests.json": json.dumps(
            {"name": "s", "tests": [{"name": f"t{index}", **existing} for index in range(limit // 120)]},
            separators=(",", ":"),
        ),
    }
    for name, text in cases.items():
        path = directory / name
        data = text.encode()
        assert len(data) <= limit, (name, len(data))
        path.write_bytes(data)
        yield path


def timed(path: Path, repeat: int) -> tuple[int, float, int]:
    """Exit code, fastest wall time in seconds, and characters printed, of `validate` on `path`."""
    times = []
    code = -1
    printed = 0
    for _ in range(repeat):
        out, err = io.StringIO(), io.StringIO()
        began = time.perf_counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main(["validate", str(path)])
        times.append(time.perf_counter() - began)
        printed = len(out.getvalue()) + len(err.getvalue())
    return code, min(times), printed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--area", help="one area of the corpus (a folder of tests/data/hostile), default all")
    parser.add_argument("--repeat", type=int, default=3, help="runs per file; the fastest counts (default 3)")
    parser.add_argument("--synthetic", action="store_true", help="add inputs just under the size limit")
    parser.add_argument("--pure-python", action="store_true", help="parse YAML without libyaml")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds a refusal may take (default 1)")
    args = parser.parse_args()
    if args.pure_python:
        parsing.LIBYAML_LOADER = None

    files = sorted(
        path for path in CORPUS.glob(f"{args.area or '*'}/*") if path.name != "expected.yaml" and path.is_file()
    )
    results: list[tuple[str, int, float, int]] = []
    with tempfile.TemporaryDirectory() as scratch:
        if args.synthetic:
            files += list(synthetic(Path(scratch), OrchestrationSettings().max_suite_bytes))
        cli_main(["validate", str(files[0])])  # imports and caches, so the first file is not charged for them
        for path in files:
            label = f"{path.parent.name}/{path.name}" if path.is_relative_to(CORPUS) else f"synthetic/{path.name}"
            code, seconds, printed = timed(path, args.repeat)
            results.append((label, code, seconds, printed))
            print(f"{seconds * 1000:9.2f} ms  exit {code}  {printed:6d} chars  {label}")

    durations = [seconds for _, _, seconds, _ in results]
    slowest = max(results, key=lambda result: result[2])
    print(
        f"\n{len(results)} files ({'pure Python' if args.pure_python else 'libyaml'} YAML parser): "
        f"median {statistics.median(durations) * 1000:.2f} ms, max {slowest[2] * 1000:.2f} ms ({slowest[0]}), "
        f"most output {max(printed for *_, printed in results)} chars"
    )
    failures = [label for label, code, seconds, _ in results if code != 2 or seconds >= args.budget]
    for label in failures:
        print(f"NOT REFUSED WITHIN {args.budget} s WITH EXIT 2: {label}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
