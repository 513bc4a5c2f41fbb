"""How busy the machine that ran the load was while it measured, and whether that makes the numbers noisy.

The counters are the kernel's own (`/proc/stat`, `/proc/loadavg`, see proc(5)), read by the runner around the
measured step. On the Docker target the runner is a container and `/proc/stat` is not namespaced, so they are the
host's, the run's own database and load included; on a cloud target they are the runner VM's. So the CPU use
during the load is reported, not judged: what marks a run noisy is the host being busy *before* its load started
(something else was running), CPU time stolen by a hypervisor, or other runs going at the same time.
"""

from __future__ import annotations

import math

from pydantic import Field

from stroppy_domain.errors import StroppyError
from stroppy_domain.model import Model

_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


class HostCountersError(StroppyError, ValueError):
    """`/proc/stat` or `/proc/loadavg` cannot be read as the kernel writes them; the message says why."""


class CpuTimes(Model):
    """The aggregate `cpu` line of /proc/stat, in clock ticks since boot (guest time is inside user and nice)."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int

    @property
    def total(self) -> int:
        return sum(getattr(self, name) for name in _FIELDS)

    @property
    def busy(self) -> int:
        return self.total - self.idle - self.iowait


class HostSample(Model):
    """One reading of the counters."""

    cpu: CpuTimes
    load_1m: float
    cpus: int = Field(ge=1)


def parse_proc_stat(text: str) -> CpuTimes:
    """The first line, `cpu  user nice system idle iowait irq softirq steal ...`. Raises HostCountersError."""
    fields = text.split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu" or len(fields) < len(_FIELDS) + 1:
        raise HostCountersError(f"/proc/stat does not start with an aggregate cpu line: {text[:80]!r}")
    try:
        return CpuTimes(**{name: int(value) for name, value in zip(_FIELDS, fields[1:], strict=False)})
    except ValueError:
        raise HostCountersError(f"/proc/stat's cpu line holds a field that is not a count: {fields!r}") from None


def parse_cpu_model(cpuinfo: str) -> str:
    """The first `model name` of /proc/cpuinfo; empty where the architecture names none (some ARM kernels)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return ""


def parse_loadavg(text: str) -> float:
    """The 1-minute load average, the first field of /proc/loadavg. Raises HostCountersError."""
    try:
        return float(text.split(maxsplit=1)[0])
    except (IndexError, ValueError):
        raise HostCountersError(f"/proc/loadavg does not start with a load average: {text[:80]!r}") from None


class NoiseLimits(Model):
    """When a run's numbers are marked noisy."""

    max_busy_before_pct: float = Field(default=30.0, ge=0, le=100, description="CPU use just before the load.")
    max_steal_pct: float = Field(default=5.0, ge=0, le=100, description="CPU time stolen during the load.")


class HostEvidence(Model):
    """The machine around the measured step: CPU shares are of all its CPUs' time."""

    cpus: int
    window_s: float = Field(description="How long the measured step ran.")
    busy_before_pct: float = Field(description="CPU use in the second before the load started.")
    busy_pct: float = Field(description="CPU use during the load, its own included.")
    steal_pct: float
    iowait_pct: float
    load_1m: float = Field(description="The 1-minute load average when the load ended.")
    kernel: str = Field(default="", description="The kernel release (/proc/sys/kernel/osrelease).")
    cpu_model: str = Field(default="", description="The first CPU's model name (/proc/cpuinfo).")
    overlapping_runs: list[str] = Field(default_factory=list, description="Other runs going when the load ended.")
    noisy: bool = False
    noise: list[str] = Field(default_factory=list, description="Why the run is marked noisy.")


def _share(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole > 0 else 0.0


def host_evidence(
    idle_start: HostSample, load_start: HostSample, load_end: HostSample, window_s: float
) -> HostEvidence:
    """The counters' differences: from `idle_start` to `load_start` (just before the load), and over the load."""
    before_total = load_start.cpu.total - idle_start.cpu.total
    total = load_end.cpu.total - load_start.cpu.total
    return HostEvidence(
        cpus=load_end.cpus,
        window_s=round(window_s, 1),
        busy_before_pct=_share(load_start.cpu.busy - idle_start.cpu.busy, before_total),
        busy_pct=_share(load_end.cpu.busy - load_start.cpu.busy, total),
        steal_pct=_share(load_end.cpu.steal - load_start.cpu.steal, total),
        iowait_pct=_share(load_end.cpu.iowait - load_start.cpu.iowait, total),
        load_1m=load_end.load_1m,
    )


def judge_noise(evidence: HostEvidence, overlapping_runs: list[str], limits: NoiseLimits) -> HostEvidence:
    """The evidence with the other runs that overlapped and, when any limit is passed, marked noisy with why."""
    noise = []
    if evidence.busy_before_pct > limits.max_busy_before_pct:
        noise.append(
            f"the host was {evidence.busy_before_pct:g}% busy before the load started "
            f"(limit {limits.max_busy_before_pct:g}%)"
        )
    if evidence.steal_pct > limits.max_steal_pct:
        noise.append(f"{evidence.steal_pct:g}% of CPU time was stolen (limit {limits.max_steal_pct:g}%)")
    if overlapping_runs:
        noise.append(f"other runs were going: {', '.join(sorted(overlapping_runs))}")
    return evidence.model_copy(update={"overlapping_runs": sorted(overlapping_runs), "noisy": bool(noise),
                                       "noise": noise})  # fmt: skip


class LoadWindow(Model):
    """When a run's load went on, and on which shared host (empty: its machines are its own hosts)."""

    run_id: str
    host: str
    started_ms: int
    ended_ms: int | None = Field(default=None, description="None while the load goes on.")


def overlapping_runs(mine: LoadWindow, others: list[LoadWindow]) -> list[str]:
    """The other runs on the same shared host whose load went on at some time during `mine` (a load that has not
    ended counts as going on); none where the machines are their own hosts."""
    if not mine.host:
        return []
    end = mine.ended_ms if mine.ended_ms is not None else math.inf
    return sorted(
        other.run_id
        for other in others
        if other.run_id != mine.run_id
        and other.host == mine.host
        and other.started_ms <= end
        and (other.ended_ms is None or other.ended_ms >= mine.started_ms)
    )
