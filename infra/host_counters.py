"""The kernel's CPU and load counters of the machine this process runs on (`/proc`), for the host evidence of a
run (`stroppy_domain.host`)."""

from __future__ import annotations

import os
from pathlib import Path

from stroppy_domain.host import HostSample, parse_cpu_model, parse_loadavg, parse_proc_stat

PROC = Path("/proc")


def read_sample(proc: Path = PROC) -> HostSample:
    """One reading of /proc/stat and /proc/loadavg, with the CPUs this process may run on.

    Raises HostCountersError when a file is not what the kernel writes, and OSError when it cannot be read."""
    return HostSample(
        cpu=parse_proc_stat((proc / "stat").read_text()),
        load_1m=parse_loadavg((proc / "loadavg").read_text()),
        cpus=len(os.sched_getaffinity(0)),
    )


def read_machine(proc: Path = PROC) -> tuple[str, str]:
    """The kernel release and the CPU model. Raises OSError when they cannot be read."""
    return (proc / "sys" / "kernel" / "osrelease").read_text().strip(), parse_cpu_model((proc / "cpuinfo").read_text())
