"""Device selection and CPU threads: the thread count that auto picks from what the machine is
doing, tested on made-up machines (2, 8 and 64 cores, container quotas) through fake /proc and
/sys files."""

from __future__ import annotations

import pytest
import torch

from mnist_cnn import TrainConfig, device, fit, load_checkpoint
from mnist_cnn.device import CpuSample, ThreadCount, cgroup_cpu_quota, cores_used_by_others, free_cores


@pytest.mark.parametrize(
    "cores, used_by_others, expected",
    [
        (2, 0.0, 2),  # a quiet 2-core machine: one thread a core, as torch picks
        (2, 0.3, 2),  # an editor, a shell: not worth a core
        (2, 0.8, 1),  # another run's thread, squeezed by ours
        (2, 2.0, 1),  # another 2-thread run: one thread, never none
        (8, 0.2, 8),
        (8, 3.4, 5),
        (64, 10.3, 54),
        (64, 80.0, 1),
    ],
)
def test_free_cores_leaves_what_others_use_and_at_least_one(cores, used_by_others, expected):
    assert free_cores(cores, used_by_others) == expected


def test_cores_used_by_others_is_the_busy_time_that_is_not_ours():
    before = CpuSample(busy=100.0, own=5.0, wall=10.0)
    after = CpuSample(busy=103.0, own=6.0, wall=12.0)  # 3 s busy in 2 s, 1 s of it ours
    assert cores_used_by_others(before, after) == pytest.approx(1.0)
    assert cores_used_by_others(after, after) == 0.0


def test_a_sample_counts_the_busy_time_of_the_cores_this_process_may_use(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal, in clock ticks
    stat.write_text(
        "cpu  900 0 300 5000 100 0 0 0 0 0\n"
        "cpu0 100 0 50 1000 10 5 5 0 0 0\n"
        "cpu1 200 0 50 1000 10 0 0 40 0 0\n"
        "cpu2 600 0 200 3000 80 0 0 0 0 0\n"
        "intr 12345\n"
    )
    monkeypatch.setattr(device, "CLOCK_TICKS", 100)
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1})
    assert CpuSample.now(stat).busy == pytest.approx((160 + 290) / 100)  # cpu2 is not ours
    assert CpuSample.now(tmp_path / "missing") is None


@pytest.mark.parametrize(
    "files, quota",
    [
        ({"cpu.max": "200000 100000\n"}, 2.0),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_a_container_cpu_quota_is_read_from_cgroup_v2_or_v1(files, quota, tmp_path, monkeypatch):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(device, "cgroup_folders", lambda root: [root, root / "cpu"])
    assert cgroup_cpu_quota(tmp_path) == quota


@pytest.mark.parametrize(
    "affinity, quota, torch_default, expected",
    [(64, None, 64, 64), (64, 2.5, 64, 2), (64, 0.5, 64, 1), (8, None, 4, 4), (2, None, 2, 2)],
)
def test_usable_cores_are_affinity_capped_by_the_quota_and_torchs_own_count(
    affinity, quota, torch_default, expected, monkeypatch
):
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: set(range(affinity)))
    monkeypatch.setattr(device, "cgroup_cpu_quota", lambda: quota)
    monkeypatch.setattr(device, "TORCH_DEFAULT_THREADS", torch_default)
    assert device.usable_cores() == expected


class FakeMachine:
    """CpuSample.now for a machine whose other processes use `others` cores: each sample comes a
    second after the last, and by default a period has always passed since then."""

    def __init__(self, monkeypatch, cores: int = 2, others: float = 0.0) -> None:
        self.others, self.wall, self.busy, self.since = others, 0.0, 0.0, 1.0
        monkeypatch.setattr(device, "usable_cores", lambda: cores)
        monkeypatch.setattr(device, "quota_binds", lambda: False)
        monkeypatch.setattr(device.CpuSample, "now", classmethod(lambda cls: self.sample()))
        monkeypatch.setattr(device.time, "monotonic", lambda: self.wall + self.since)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    def sample(self) -> CpuSample:
        self.wall += 1.0
        self.busy += self.others
        return CpuSample(self.busy, 0.0, self.wall)


def test_auto_follows_the_machine_and_fixed_does_not(monkeypatch):
    machine = FakeMachine(monkeypatch, cores=8)
    before = torch.get_num_threads()
    try:
        auto = ThreadCount(None)
        assert auto.auto and auto.count == 8
        machine.others = 3.2
        assert auto.adapt() == 5 and torch.get_num_threads() == 5
        machine.others, machine.since = 0.1, 0.5
        assert auto.adapt() == 5  # re-measured at most once a period
        machine.since = 1.0
        assert auto.adapt() == 8 and auto.take_changes() == 2 and auto.take_changes() == 0
        fixed = ThreadCount(3)
        machine.others = 7.0
        assert not fixed.auto and fixed.adapt() == 3 and torch.get_num_threads() == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's own setting is a fixed count too
        assert not ThreadCount(None).auto and torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert not ThreadCount(None, adaptive=False).auto  # on a GPU: one thread a core
    finally:
        torch.set_num_threads(before)


def test_a_run_records_its_thread_count_and_a_resumed_run_goes_on_with_it(mnist_dir, tmp_path, monkeypatch):
    machine = FakeMachine(monkeypatch, cores=2, others=1.5)  # another process is busy at the start
    config = TrainConfig(
        data_dir=str(mnist_dir), batch_size=64, epochs=2, save_model=True, output_dir=str(tmp_path)
    )

    def stop_after_first_epoch(metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, on_epoch=stop_after_first_epoch)
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["threads"] == 1 and saved["history"][0]["threads"] == 1

    starts = []
    machine.others = 0.0  # quiet now, but the resumed run starts with the count it had
    fit(config, resume=tmp_path / "last.pt", on_start=starts.append)
    assert starts[0]["threads"].startswith("1 thread (auto")


def test_fit_leaves_torchs_thread_count_as_it_found_it(mnist_dir, monkeypatch):
    FakeMachine(monkeypatch, cores=2, others=1.5)
    before = torch.get_num_threads()
    fit(TrainConfig(data_dir=str(mnist_dir), batch_size=64))
    assert torch.get_num_threads() == before


def test_under_a_container_quota_the_count_is_the_quotas_and_does_not_adapt(monkeypatch):
    # /proc/stat would show the whole 64-core host's other tenants, not what competes for the quota.
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(device, "cgroup_cpu_quota", lambda: 2.5)
    monkeypatch.setattr(device, "TORCH_DEFAULT_THREADS", 64)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        threads = ThreadCount(None)
        assert not threads.auto and threads.count == 2 and threads.adapt(force=True) == 2
    finally:
        torch.set_num_threads(before)
