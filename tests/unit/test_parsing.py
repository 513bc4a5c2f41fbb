"""Bounded parsing: alias and nesting budgets, duplicate keys, JSON read as JSON, control characters, the input size
limit, short excerpts of offending values and a bounded number of printed issues; and the command line's exit codes
for every error of the project."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from flows import cli
from stroppy_domain.errors import (
    REPORT_CHARS,
    InvalidSuiteError,
    Issue,
    PlanningError,
    StroppyError,
    excerpt,
    sorted_issues,
)
from stroppy_domain.model import Target
from stroppy_domain.parsing import (
    LIBYAML_LOADER,
    MAX_ALIAS_NODES,
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_VALUES,
    BoundedLoader,
    data_issues,
    load_yaml,
    parse_document,
)
from stroppy_domain.settings import AddressSpace, PlannerSettings
from stroppy_domain.subnets import SubnetError, first_free_subnet
from stroppy_domain.validation import assign_subnets, load_suite, validate_suite
from tests.conftest import EXAMPLES, fresh_suite

LOADERS = [BoundedLoader, *([LIBYAML_LOADER] if LIBYAML_LOADER is not None else [])]
LOADER_IDS = ["pure", *(["libyaml"] if LIBYAML_LOADER is not None else [])]


def refusal(text: str, loader: object | None = None) -> str:
    with pytest.raises(InvalidSuiteError) as caught:
        load_yaml(text, "suite.yaml", loader) if loader is not None else parse_document(text, "suite.yaml")  # type: ignore[arg-type]
    return str(caught.value)


def laughs(levels: int, width: int = 9) -> str:
    """The billion laughs: each level an anchored list of `width` aliases of the level before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]" for level in range(1, levels)]
    return "\n".join(lines) + "\n"


def nested_flow(levels: int) -> str:
    return "[" * levels + "]" * levels


# --- aliases -------------------------------------------------------------------------------------------------------

ALIAS_REFUSALS = [
    # (case, text, fragment of the refusal)
    ("billion laughs", laughs(9), f"aliases expand to more than {MAX_ALIAS_NODES} values"),
    ("one wide anchor used many times", "a: &a [" + ",".join(["1"] * 2000) + "]\nb: [" + ", ".join(["*a"] * 6) + "]\n",
     f"aliases expand to more than {MAX_ALIAS_NODES} values"),
    ("mapping laughs", "a: &a {x: 1, y: 2}\n" + "".join(
        f"m{i}: &m{i} {{p: *{'a' if i == 0 else f'm{i - 1}'}, q: *{'a' if i == 0 else f'm{i - 1}'}, "
        f"r: *{'a' if i == 0 else f'm{i - 1}'}}}\n" for i in range(12)), "aliases expand"),
    ("more aliases than the budget", "v: &v x\nl: [" + ", ".join(["*v"] * (MAX_ALIASES + 1)) + "]\n",
     f"l[{MAX_ALIASES}]: more than {MAX_ALIASES} YAML aliases"),
    ("a list containing itself", "a: &a [1, *a]\n", "a[1]: alias *a is inside its own anchor"),
    ("a mapping containing itself", "a: &a {b: {c: *a}}\n", "a.b.c: alias *a is inside its own anchor"),
    ("a merge of itself", "a: &a {<<: *a}\n", "alias *a is inside its own anchor"),
    ("an alias that nests too deep", "d: &d " + nested_flow(40) + "\nu: " + "[" * 30 + "*d" + "]" * 30 + "\n",
     f"alias *d nests collections more than {MAX_DEPTH} levels deep"),
]  # fmt: skip


@pytest.mark.timeout(10)
@pytest.mark.parametrize("loader", LOADERS, ids=LOADER_IDS)
@pytest.mark.parametrize(("text", "fragment"), [c[1:] for c in ALIAS_REFUSALS], ids=[c[0] for c in ALIAS_REFUSALS])
def test_aliases_beyond_the_budget_are_refused_without_expanding_them(text: str, fragment: str, loader: type) -> None:
    assert fragment in refusal(text, loader)


@pytest.mark.parametrize("loader", LOADERS, ids=LOADER_IDS)
def test_aliases_within_the_budget_are_kept(loader: type) -> None:
    text = "v: &v x\nl: [" + ", ".join(["*v"] * (MAX_ALIASES - 9)) + "]\n" + laughs(2)
    data = load_yaml(text, "", loader)
    assert data["l"] == ["x"] * (MAX_ALIASES - 9)
    assert data["l1"] == [["lol"] * 9] * 9
    merged = load_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n", "", loader)
    assert merged["c"] == {"x": 1, "y": 3}, "a key beside a merge key overrides the merged one; it is no duplicate"


@pytest.mark.parametrize("loader", [*LOADERS, None], ids=[*LOADER_IDS, "json"])
def test_a_document_of_more_values_than_the_budget_is_refused(loader: type | None) -> None:
    def document(values: int) -> str:
        return "[" + ", ".join(["1"] * (values - 1)) + "]"  # the list itself is a value too

    def read(text: str) -> object:
        return parse_document(text) if loader is None else load_yaml(text, "", loader)

    assert len(read(document(MAX_VALUES))) == MAX_VALUES - 1  # type: ignore[arg-type]
    assert f"more than {MAX_VALUES} values in one document" in refusal(document(MAX_VALUES + 1), loader)


def test_unbounded_data_from_a_caller_is_refused_too() -> None:
    shared: list[object] = ["lol"] * 10
    for _ in range(9):
        shared = [shared] * 10  # a billion strings, as a Python caller (or a lenient YAML loader) would hand them
    assert "more than 50000 values in one document" in str(data_issues({"tests": shared})[0])
    cyclic: list[object] = []
    cyclic.append(cyclic)
    (issue,) = data_issues({"tests": cyclic})
    assert issue.message == f"collections nested more than {MAX_DEPTH} levels deep"
    with pytest.raises(InvalidSuiteError, match="levels deep"):
        validate_suite({"name": "s", "tests": cyclic})


# --- duplicate keys ------------------------------------------------------------------------------------------------

DUPLICATES = [
    # (case, text, the path of the mapping and the key)
    ("top level", "name: a\nname: b\n", "<suite>: duplicate key 'name' (line 2)"),
    ("in a test", "tests:\n  - name: a\n    stroppy: {duration: 1m, duration: 2m}\n",
     "tests[0].stroppy: duplicate key 'duration' (line 3)"),
    ("deep in a cluster", "tests:\n  - database:\n      cluster:\n        addons:\n          etcd:\n"
     "            size: 3\n            size: 5\n",
     "tests[0].database.cluster.addons.etcd: duplicate key 'size' (line 7)"),
    ("in a list item", "tests:\n  - {}\n  - replica_overrides: [{index: 0}, {index: 1, index: 0}]\n",
     "tests[1].replica_overrides[1]: duplicate key 'index'"),
    ("quoted and plain", "name: a\n'name': b\n", "<suite>: duplicate key 'name'"),
    ("one number spelled twice", "env: {1: a, 0x1: b}\n", "env: duplicate key 1"),
]  # fmt: skip


@pytest.mark.parametrize("loader", LOADERS, ids=LOADER_IDS)
@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in DUPLICATES], ids=[c[0] for c in DUPLICATES])
def test_duplicate_yaml_keys_are_refused_with_the_path_of_their_mapping(text: str, expected: str, loader: type) -> None:
    assert expected in refusal(text, loader)


def test_every_duplicate_is_reported_and_different_keys_are_not_duplicates() -> None:
    message = refusal("a: 1\na: 2\nb: {c: 1, c: 2}\n")
    assert "<suite>: duplicate key 'a'" in message
    assert "b: duplicate key 'c'" in message
    assert parse_document("'1': a\n1: b\n'true': c\nnull: d\n'null': e\n") == {
        "1": "a",
        1: "b",
        "true": "c",
        None: "d",
        "null": "e",
    }
    assert "<suite>: duplicate key True (line 2)" in refusal("1: a\ntrue: b\n"), "1 and true are one key in Python"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "a", "name": "b"}', "<suite>: duplicate key 'name'"),
        ('{"tests": [{"stroppy": {"env": {"A": "1", "A": "2"}}}]}', "tests[0].stroppy.env: duplicate key 'A'"),
        ('[{"a": 1}, {"b": {"c": 1, "c": 1}}]', "[1].b: duplicate key 'c'"),
    ],
)
def test_duplicate_json_keys_are_refused_with_their_path(text: str, expected: str) -> None:
    assert expected in refusal(text)


# --- nesting -------------------------------------------------------------------------------------------------------


def block_mappings(levels: int) -> str:
    return "".join("  " * level + f"k{level}:\n" for level in range(levels - 1)) + "  " * (levels - 1) + "last: x\n"


NESTINGS = {
    "flow": nested_flow,
    "block mappings": block_mappings,
    "block sequences": lambda levels: "- " * levels + "x",
    "flow mappings": lambda levels: "{a: " * levels + "x" + "}" * levels,
}


@pytest.mark.parametrize("loader", LOADERS, ids=LOADER_IDS)
@pytest.mark.parametrize("nesting", NESTINGS.values(), ids=NESTINGS.keys())
def test_nesting_up_to_the_limit_is_read_and_one_more_level_is_refused(
    nesting: Callable[[int], str], loader: type
) -> None:
    data = load_yaml(nesting(MAX_DEPTH), "", loader)
    assert data_issues(data) == []
    assert f"collections nested more than {MAX_DEPTH} levels deep" in refusal(nesting(MAX_DEPTH + 1), loader)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("loader", LOADERS, ids=LOADER_IDS)
@pytest.mark.parametrize("levels", [1000, 100_000])
def test_very_deep_yaml_is_refused_without_a_recursion_error(levels: int, loader: type) -> None:
    message = refusal("a: " + "[" * levels, loader)
    assert "nest" in message  # ours at 65 levels, or libyaml's own limit where it looks ahead further


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 500, 5000, 200_000])
def test_very_deep_json_is_refused_without_a_recursion_error(levels: int) -> None:
    assert f"collections nested more than {MAX_DEPTH} levels deep" in refusal(nested_flow(levels))
    assert data_issues(parse_document(nested_flow(MAX_DEPTH))) == []


@pytest.mark.parametrize(("levels", "expected"), [(500, "line 1, column 501"), (200_000, "levels deep")])
def test_unclosed_json_is_refused_at_its_end_or_its_depth(levels: int, expected: str) -> None:
    assert expected in refusal("[" * levels)


# --- JSON is JSON --------------------------------------------------------------------------------------------------


def test_json_is_read_as_json_with_tabs_and_exponents() -> None:
    text = '{\n\t"name": "s",\n\t"numbers": [1e2, 2.5E-1, -0, 1E+2],\n\t"tab\\tkey": "\\u00e9"\n}'
    assert parse_document(text) == {"name": "s", "numbers": [100.0, 0.25, 0, 100.0], "tab\tkey": "é"}
    assert parse_document("\ufeff  \n[1e2]") == [100.0]


def test_a_json_suite_with_tabs_and_exponents_validates() -> None:
    data = fresh_suite()
    data["tests"][0]["stroppy"]["scale"] = "SCALE"
    text = json.dumps(data, indent="\t").replace('"SCALE"', "1e2")
    suite = load_suite(text, "suite.json")
    assert suite.tests[0].stroppy.scale == 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "s", "tests": [}', "line 1, column 25"),
        ('{\n\t"name": "s",\n\t"tests": [1,]\n}', "line 3, column 14"),
        ('{\n  "name": "s", // comment\n}', "line 2, column 16"),
        ('{"a": ' + "9" * 5000 + "}", "a number has more than 4300 digits"),
    ],
)
def test_json_syntax_errors_name_line_and_column(text: str, expected: str) -> None:
    assert expected in refusal(text)


def test_yaml_flow_style_stays_yaml() -> None:
    assert parse_document("{name: s, tests: [a, 1e2]}") == {"name": "s", "tests": ["a", "1e2"]}
    assert parse_document("{'name': s}") == {"name": "s"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 2024-02-30\n", "line 1, column 4: cannot read this value: day is out of range"),
        ("a: " + "9" * 5000 + "\n", "line 1, column 4: cannot read this value"),
        ("a: !!python/object/apply:os.system ['id']\n", "line 1, column 4"),
        ("a: 1\n---\nb: 2\n", "expected a single document in the stream"),
    ],
)
def test_yaml_values_python_cannot_hold_are_refused_with_their_line(text: str, expected: str) -> None:
    assert expected in refusal(text)


# --- control characters --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "char", ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9b", "\ufffe"]
)
@pytest.mark.parametrize("template", ["name: s\ndescription: a{}b\n", '{{"name": "s",\n "description": "a{}b"}}'])
def test_control_characters_are_refused_with_line_and_column(char: str, template: str) -> None:
    text = template.format(char)
    line = 2
    column = text.split("\n")[1].index(char) + 1  # str.splitlines would also split at some of these characters
    assert f"line {line}, column {column}: control character {char!r} is not allowed" in refusal(text)


def test_tab_newline_and_carriage_return_are_text() -> None:
    assert parse_document("name: s\r\ndescription: 'a\tb'\r\n") == {"name": "s", "description": "a\tb"}


# --- excerpts and the number of issues printed ---------------------------------------------------------------------


def test_a_huge_value_is_shown_as_a_short_excerpt() -> None:
    value = "x" * 50_000_000
    shown = str(Issue("tests[0].name", "too long", value))
    assert len(shown) < 200
    assert shown.endswith("…(50000000 characters))")
    assert len(excerpt(list(range(1_000_000)))) <= 81
    assert len(excerpt({"k": "v" * 10_000, "l": [[1] * 10_000] * 10_000})) <= 81
    assert excerpt("short") == "'short'"


def test_paths_and_messages_are_bounded_and_cannot_drive_the_terminal() -> None:
    shown = str(Issue("tests[0]." + "\x1b[2J" + "k" * 100_000, "bad\nvalue\x1b[31m" * 10_000))
    assert "\x1b" not in shown and "\n" not in shown
    assert len(shown) < 1000


@pytest.mark.parametrize(("count", "size"), [(10_000, 10), (60, 100_000), (3, 10_000_000)])
def test_a_refusal_prints_a_bounded_report(count: int, size: int) -> None:
    issues = [Issue(f"tests[{index}].name" + "p" * size, "m" * size, "v" * size) for index in range(count)]
    report = str(InvalidSuiteError(issues, "suite.yaml"))
    assert len(report) < REPORT_CHARS + 500
    assert report.startswith(f"suite.yaml: {count} problems found")
    shown = report.count("\n  - ")
    assert shown <= 50
    assert report.endswith(f"... and {count - shown} more") if shown < count else shown == count


def test_issues_are_listed_in_the_order_of_the_tests() -> None:
    issues = [Issue(f"tests[{index}].name", "bad") for index in (10, 2, 100, 1)]
    assert [issue.path for issue in sorted_issues(issues)] == [f"tests[{i}].name" for i in (1, 2, 10, 100)]


# --- the input size limit ------------------------------------------------------------------------------------------


def test_a_file_larger_than_the_limit_is_refused_before_it_is_parsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: s\ndescription: " + "x" * 2_000_000 + "\n")
    assert cli.main(["validate", str(big)]) == 2
    err = capsys.readouterr().err
    assert "larger than the limit of 1048576 bytes" in err
    assert "STROPPY_MAX_SUITE_BYTES" in err
    assert len(err) < 1000


@pytest.mark.parametrize("limit", [100, 1000])
def test_the_limit_is_a_setting_and_a_file_at_the_limit_is_read(
    tmp_path: Path, limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STROPPY_MAX_SUITE_BYTES", str(limit))
    exact = tmp_path / "exact.yaml"
    exact.write_bytes(b"#" * (limit - 1) + b"\n")
    assert cli._read(str(exact)) == "#" * (limit - 1) + "\n"
    exact.write_bytes(b"#" * limit + b"\n")
    with pytest.raises(cli.CliError, match=f"larger than the limit of {limit} bytes"):
        cli._read(str(exact))


@pytest.mark.timeout(10)
def test_an_endless_file_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "/dev/zero"]) == 2
    assert "/dev/zero: larger than the limit" in capsys.readouterr().err


@pytest.mark.timeout(10)
def test_an_endless_pipe_is_refused() -> None:
    read_end, write_end = os.pipe()

    def write_forever() -> None:
        try:
            while True:
                os.write(write_end, b"a" * 65536)
        except OSError:  # the reader closed its end
            os.close(write_end)

    writer = threading.Thread(target=write_forever, daemon=True)
    writer.start()
    try:
        with pytest.raises(cli.CliError, match="larger than the limit"):
            cli._read(f"/proc/self/fd/{read_end}", limit=100_000)
    finally:
        os.close(read_end)
    writer.join(timeout=5)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"name: caf\xe9\n", "byte 0xe9 at byte offset 9 (line 1)"),
        (b"name: s\n\n\xff\n", "byte 0xff at byte offset 9 (line 3)"),
        ("name: s\n".encode("utf-16"), "byte 0xff at byte offset 0 (line 1)"),
    ],
)
def test_a_file_that_is_not_utf8_is_refused_with_the_byte_offset(
    tmp_path: Path, content: bytes, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_bytes(content)
    assert cli.main(["plan", str(suite)]) == 2
    assert f"not UTF-8 text: {expected}" in capsys.readouterr().err


# --- subnets: validation and planning agree ------------------------------------------------------------------------


def reference_subnets(targets: list[Target], settings: PlannerSettings) -> list[str]:
    """What `plan` used to compute, one `first_free_subnet` call per test."""
    taken: dict[str, list[str]] = {}
    subnets = []
    for target in targets:
        space = settings.address_space(target)
        subnet = first_free_subnet(space.base_cidr, space.prefix, taken.setdefault(space.base_cidr, []))
        taken[space.base_cidr].append(subnet)
        subnets.append(subnet)
    return subnets


SHARED_BASE = PlannerSettings(
    address_spaces={
        Target.DOCKER: AddressSpace(base_cidr="10.0.0.0/22", prefix=24),
        Target.YANDEX_CLOUD: AddressSpace(base_cidr="10.0.0.0/22", prefix=25),
    }
)


@pytest.mark.parametrize(
    ("targets", "settings"),
    [
        ([Target.DOCKER] * 40 + [Target.YANDEX_CLOUD] * 3 + [Target.DOCKER] * 5, PlannerSettings()),
        ([Target.DOCKER, Target.YANDEX_CLOUD, Target.YANDEX_CLOUD, Target.DOCKER, Target.YANDEX_CLOUD], SHARED_BASE),
    ],
    ids=["one prefix per address space", "two prefixes in one address space"],
)
def test_assigned_subnets_are_the_ones_planning_takes(targets: list[Target], settings: PlannerSettings) -> None:
    subnets, issues = assign_subnets(targets, settings)
    assert not issues
    assert [subnets[index] for index in range(len(targets))] == reference_subnets(targets, settings)


@pytest.mark.parametrize(
    ("targets", "settings", "path"),
    [
        ([Target.DOCKER] * 300, PlannerSettings(), "tests[256]"),
        ([Target.YANDEX_CLOUD] + [Target.DOCKER] * 257, PlannerSettings(), "tests[257]"),
        ([Target.DOCKER] * 3 + [Target.YANDEX_CLOUD] * 3, SHARED_BASE, "tests[5]"),
    ],
)
def test_the_first_test_without_a_subnet_is_named(targets: list[Target], settings: PlannerSettings, path: str) -> None:
    _, issues = assign_subnets(targets, settings)
    assert [issue.path for issue in issues] == [path]
    with pytest.raises(SubnetError):
        reference_subnets(targets, settings)


# --- the command line never shows a traceback for the project's errors --------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PlanningError("tests[0].database", "cannot lay out"), 2),
        (SubnetError("no free /24 subnet left in 172.28.0.0/16"), 2),
        (StroppyError("the registry does not answer"), 1),
    ],
)
def test_every_error_of_the_project_ends_in_an_exit_code(
    error: StroppyError, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(*_: object) -> None:
        raise error

    monkeypatch.setattr(cli, "plan_suite", fail)
    assert cli.main(["plan", str(EXAMPLES / "suite.yaml")]) == code
    out, err = capsys.readouterr()
    assert str(error) in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("error", [PlanningError("database", "no address"), SubnetError("subnet holds 3 machines")])
def test_plan_turns_planning_errors_into_an_invalid_suite(
    error: StroppyError, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(*_: object, **__: object) -> None:
        raise error

    monkeypatch.setattr(cli, "plan_run", fail)
    assert cli.main(["plan", str(EXAMPLES / "suite.yaml")]) == 2
    err = capsys.readouterr().err
    assert "1 problem found" in err


def test_yaml_documents_are_read_as_before() -> None:
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        text = path.read_text()
        assert parse_document(text) == yaml.safe_load(text), path
        for loader in LOADERS:
            assert load_yaml(text, "", loader) == yaml.safe_load(text), (path, loader)


def test_a_limit_that_is_not_a_size_is_reported_as_a_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STROPPY_MAX_SUITE_BYTES", "a lot")
    assert cli.main(["validate", str(EXAMPLES / "suite.yaml")]) == 2
    err = capsys.readouterr().err
    assert "max_suite_bytes: Input should be a valid integer" in err
    assert "Traceback" not in err
