"""Where the arithmetic runs: device selection, bf16 autocast, and how many CPU threads.

Used by training and by everything that only uses a trained net, so it imports nothing but torch.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import MnistCnnError


def select_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, else CPU; a named device must be available."""
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MnistCnnError(f"--device {name!r} is not a device (try cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MnistCnnError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise MnistCnnError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not has_mps:
        raise MnistCnnError(f"--device {name}: Apple MPS is not available on this machine")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for, else nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# torch's own choice, before anything here changes it: one thread per core it can see.
TORCH_DEFAULT_THREADS = torch.get_num_threads()
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU thread count set to threads (when given) for the duration."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def usable_cores() -> int:
    """The cores this process may use: those it may run on (its CPU affinity), capped by the CPU
    quota of its container (cgroup), and never more than torch would use by itself."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, min(cores, TORCH_DEFAULT_THREADS))


def quota_binds() -> bool:
    """Whether a container's CPU quota allows fewer cores than the process may run on."""
    quota = cgroup_cpu_quota()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return quota is not None and quota < cores


def cgroup_cpu_quota(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota, in cores, of this process's cgroup and its parents (the smallest), or None.
    cgroup v2: cpu.max ("max 100000" or "200000 100000"); v1: cpu.cfs_quota_us / cpu.cfs_period_us."""
    quotas = []
    for folder in cgroup_folders(cgroup_root):
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            try:
                quota = (folder / "cpu.cfs_quota_us").read_text().strip()
                period = (folder / "cpu.cfs_period_us").read_text().strip()
            except OSError:
                continue
        if quota not in ("max", "-1") and float(period) > 0:
            quotas.append(float(quota) / float(period))
    return min(quotas, default=None)


def cgroup_folders(cgroup_root: Path) -> list[Path]:
    """This process's cgroup folder and its parents: cgroup v2's, and v1's cpu hierarchy."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return [cgroup_root]
    folders = [cgroup_root]
    for line in lines:  # "0::/user.slice/..." (v2) or "4:cpu,cpuacct:/docker/..." (v1)
        _, controllers, path = line.split(":", 2)
        if controllers and "cpu" not in controllers.split(","):
            continue
        base, parts = cgroup_root / controllers, Path(path.lstrip("/")).parts
        folders += [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]
    return folders


@dataclass(frozen=True)
class CpuSample:
    """CPU time at one moment: busy seconds of the cores this process may use, this process's
    own CPU seconds, and the wall clock."""

    busy: float
    own: float
    wall: float

    @classmethod
    def now(cls, stat: Path = Path("/proc/stat")) -> CpuSample | None:
        """A sample, or None where /proc/stat cannot be read (not Linux)."""
        try:
            lines = stat.read_text().splitlines()
        except OSError:
            return None
        try:
            cpus = {f"cpu{n}" for n in os.sched_getaffinity(0)}
        except AttributeError:
            cpus = None
        busy = 0
        for line in lines:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu" and (cpus is None or name in cpus):
                # user nice system idle iowait irq softirq steal: all but idle and iowait are busy
                values = [int(v) for v in fields[:8]]
                busy += sum(values) - values[3] - values[4]
        return cls(busy / CLOCK_TICKS, time.process_time(), time.monotonic())


def cores_used_by_others(before: CpuSample, after: CpuSample) -> float:
    """How many cores' worth of CPU time other processes used between two samples."""
    seconds = after.wall - before.wall
    if seconds <= 0:
        return 0.0
    return max(0.0, (after.busy - before.busy) - (after.own - before.own)) / seconds


def free_cores(cores: int, used_by_others: float) -> int:
    """The cores left to this process, at least one: others' use is rounded to whole cores."""
    return max(1, min(cores, math.floor(cores - used_by_others + 0.5)))


class ThreadCount:
    """torch's CPU thread count for a training run.

    Fixed (--threads N, or OMP_NUM_THREADS in the environment): that count throughout, and the
    same seed gives the same run bit for bit. Auto (None): as many threads as there are usable
    cores that other processes leave free, measured from /proc/stat at the start and again every
    `period` seconds while training. torch's threads meet at a barrier in every operation; when
    another process holds a core, each barrier waits for a thread that is not running, and a run
    can take 10-30 times as long. On a quiet machine auto keeps one thread per core (the count
    torch picks), so the run is bitwise the one --threads with that count gives; when the count
    changes, the run is no longer bitwise repeatable, since the thread count changes how sums
    are split.
    """

    def __init__(self, fixed: int | None, adaptive: bool = True, period: float = 1.0) -> None:
        """fixed: --threads; adaptive: whether auto adapts (on the CPU) or keeps one thread a core."""
        environment = os.environ.get("OMP_NUM_THREADS", "")
        if fixed is None and environment.isdigit() and int(environment) > 0:
            fixed = int(environment)
        self.fixed, self.cores, self.period = fixed, usable_cores(), period
        # In a container whose CPU quota is below the cores it may run on, /proc/stat shows the
        # whole host's other tenants, not what competes for the quota: keep the quota's cores.
        adaptive = adaptive and not quota_binds()
        self.sample = CpuSample.now() if fixed is None and adaptive else None
        self.count, self.changes = fixed or self.cores, 0
        torch.set_num_threads(self.count)

    @property
    def auto(self) -> bool:
        """Whether the count follows the machine (else it stays as it is)."""
        return self.sample is not None

    def resume_at(self, count: int) -> None:
        """Go on with the count a resumed run had when it stopped (auto only: fixed stays fixed)."""
        if self.auto:
            self.count = count
            torch.set_num_threads(count)

    def start(self, resumed_at: int | None = None) -> None:
        """As training begins: go on with the count a resumed run had when it stopped (resumed_at),
        else measure afresh what others used of the cores since the run started. The count's
        changes so far are not the epochs' to report."""
        if resumed_at:
            self.resume_at(resumed_at)
        else:
            self.adapt(force=True)
        self.take_changes()

    def adapt(self, force: bool = False) -> int:
        """Re-measure (at most every period seconds, unless force) and set the count."""
        if self.sample is None:  # fixed, or where /proc/stat cannot be read
            return self.count
        now = time.monotonic()
        if not force and now - self.sample.wall < self.period:
            return self.count
        sample = CpuSample.now()
        if sample is None:
            return self.count
        count = free_cores(self.cores, cores_used_by_others(self.sample, sample))
        self.sample = sample
        if count != self.count:
            torch.set_num_threads(count)
            self.count, self.changes = count, self.changes + 1
        return self.count

    def take_changes(self) -> int:
        """How often the count changed since the last call."""
        changes, self.changes = self.changes, 0
        return changes

    def describe(self) -> str:
        """For the banner: '2 threads (auto: ...)' or '1 thread (fixed)'."""
        plural = "thread" if self.count == 1 else "threads"
        if self.auto:
            return f"{self.count} {plural} (auto: the cores that other processes leave free, of {self.cores})"
        return f"{self.count} {plural} (fixed)"
