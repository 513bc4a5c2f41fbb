"""Host evidence: the kernel's counters read as proc(5) writes them, their differences, and when a run is noisy."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.host_counters import read_sample
from stroppy_domain.host import (
    CpuTimes,
    HostCountersError,
    HostSample,
    LoadWindow,
    NoiseLimits,
    host_evidence,
    judge_noise,
    overlapping_runs,
    parse_loadavg,
    parse_proc_stat,
)
from stroppy_domain.reports import run_markdown
from tests.unit.test_reports import facts

STAT = "cpu  100 0 50 800 40 0 10 0 0 0\ncpu0 50 0 25 400 20 0 5 0 0 0\nintr 1 2 3\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "aggregate cpu line"),
        ("cpu0 1 2 3 4 5 6 7 8\n", "aggregate cpu line"),
        ("cpu 1 2 3\n", "aggregate cpu line"),  # a kernel older than 2.6.11 has no steal
        ("cpu 1 2 x 4 5 6 7 8\n", "not a count"),
    ],
)
def test_what_is_not_proc_stat_is_refused(text: str, problem: str) -> None:
    with pytest.raises(HostCountersError, match=problem):
        parse_proc_stat(text)


def test_proc_stat_and_loadavg_are_read_as_the_kernel_writes_them() -> None:
    cpu = parse_proc_stat(STAT)
    assert (cpu.total, cpu.busy, cpu.steal) == (1000, 160, 0)
    assert parse_loadavg("0.52 0.58 0.59 1/467 12345\n") == 0.52
    with pytest.raises(HostCountersError, match="load average"):
        parse_loadavg("")


def sample(user: int, idle: int, steal: int = 0, iowait: int = 0, load: float = 0.5) -> HostSample:
    cpu = CpuTimes(user=user, nice=0, system=0, idle=idle, iowait=iowait, irq=0, softirq=0, steal=steal)
    return HostSample(cpu=cpu, load_1m=load, cpus=2)


def test_evidence_is_the_difference_of_the_counters() -> None:
    idle, start, end = sample(0, 0), sample(10, 190), sample(610, 290, steal=50, iowait=50, load=1.8)
    evidence = host_evidence(idle, start, end, 12.34)
    assert (evidence.busy_before_pct, evidence.busy_pct, evidence.steal_pct, evidence.iowait_pct) == (
        5.0, 81.2, 6.2, 6.2,
    )  # fmt: skip
    assert (evidence.window_s, evidence.load_1m, evidence.cpus) == (12.3, 1.8, 2)


LIMITS = NoiseLimits(max_busy_before_pct=30, max_steal_pct=5)
NOISE = [
    # (busy before %, steal %, other runs, expected reasons)
    (10.0, 1.0, [], []),
    (30.0, 5.0, [], []),  # at the limits: not beyond them
    (30.1, 0.0, [], ["the host was 30.1% busy before the load started (limit 30%)"]),
    (0.0, 7.5, [], ["7.5% of CPU time was stolen (limit 5%)"]),
    (0.0, 0.0, ["run-b", "run-a"], ["other runs were going: run-a, run-b"]),
]


@pytest.mark.parametrize(("before", "steal", "others", "reasons"), NOISE)
def test_a_run_is_noisy_beyond_the_limits(before: float, steal: float, others: list[str], reasons: list[str]) -> None:
    evidence = host_evidence(sample(0, 0), sample(0, 100), sample(0, 100), 1).model_copy(
        update={"busy_before_pct": before, "steal_pct": steal}
    )
    judged = judge_noise(evidence, others, LIMITS)
    assert judged.noise == reasons and judged.noisy is bool(reasons)
    assert judged.overlapping_runs == sorted(others)


def test_this_machines_counters_can_be_read(tmp_path: Path) -> None:
    reading = read_sample()
    assert reading.cpu.total > 0 and reading.cpus >= 1
    (tmp_path / "stat").write_text("garbage\n")
    (tmp_path / "loadavg").write_text("0.1 0.2 0.3 1/2 3\n")
    with pytest.raises(HostCountersError):
        read_sample(tmp_path)


def test_the_report_shows_the_host_and_why_it_was_noisy() -> None:
    evidence = judge_noise(host_evidence(sample(0, 0), sample(0, 100), sample(0, 100), 1), ["run-x"], LIMITS)
    markdown = run_markdown(facts(host=evidence))
    assert "## Host" in markdown and "**Noisy:** other runs were going: run-x." in markdown
    assert "No host evidence: /proc/stat is unreadable." in run_markdown(facts(host_error="/proc/stat is unreadable"))


def window(run_id: str, started: int, ended: int | None, host: str = "docker:e1") -> LoadWindow:
    return LoadWindow(run_id=run_id, host=host, started_ms=started, ended_ms=ended)


@pytest.mark.parametrize(
    ("mine", "others", "expected"),
    [
        pytest.param(window("a", 100, 200), [window("b", 150, 250)], ["b"], id="overlaps-the-end"),
        pytest.param(window("a", 100, 200), [window("b", 50, 120)], ["b"], id="overlaps-the-start"),
        pytest.param(window("a", 100, 200), [window("b", 120, 180)], ["b"], id="started-and-ended-inside"),
        pytest.param(window("a", 100, 200), [window("b", 50, 300)], ["b"], id="spans-it"),
        pytest.param(window("a", 100, 200), [window("b", 150, None)], ["b"], id="still-going"),
        pytest.param(window("a", 100, 200), [window("b", 20, 90), window("c", 210, 300)], [], id="before-and-after"),
        pytest.param(window("a", 100, 200), [window("b", 200, 300)], ["b"], id="touching-counts"),
        pytest.param(window("a", 100, 200), [window("b", 150, 160, host="docker:e2")], [], id="another-host"),
        pytest.param(window("a", 100, 200, host=""), [window("b", 150, 160, host="")], [], id="own-hosts"),
        pytest.param(window("a", 100, None), [window("b", 500, None)], ["b"], id="mine-still-going"),
        pytest.param(window("a", 100, 200), [window("a", 100, 200), window("c", 1, 2)], [], id="not-itself"),
        pytest.param(window("a", 100, 200), [window("c", 150, 160), window("b", 190, None)], ["b", "c"], id="sorted"),
    ],
)
def test_the_runs_whose_load_overlapped(mine: LoadWindow, others: list[LoadWindow], expected: list[str]) -> None:
    assert overlapping_runs(mine, others) == expected
