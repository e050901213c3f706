"""Faults survived, with real processes: a torchrun worker killed mid-epoch, a process killed while
it writes, a disk that fills, machines (simulated on this one) that die or never come, and many
two-process runs that must leave their process group cleanly. Every run that completes must end
with bitwise the weights of the same run never interrupted, at the same number of processes."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnist_cnn.synthetic import write_synthetic

from .helpers import NO_NETWORK, assert_one_line_error, wait_for

pytestmark = pytest.mark.slow

ENV = {**os.environ, **NO_NETWORK, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
FLAGS = ["--epochs", "3", "--threads", "1", "--no-progress", "--resume", "auto"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Synthetic MNIST big enough for an epoch to last a moment (4,096 training images)."""
    return write_synthetic(tmp_path_factory.mktemp("faults-data"), n_train=4096, n_test=512)


def train(data: Path, output: Path, processes: int = 1, extra: list[str] = ()) -> list[str]:
    """The training command of these tests: one process, or torchrun's --standalone."""
    args = ["--data-dir", str(data), *FLAGS, "--output-dir", str(output), *extra]
    if processes == 1:
        return [sys.executable, "-m", "mnist_cnn.train", *args]
    return [*TORCHRUN, "--standalone", f"--nproc_per_node={processes}", "-m", "mnist_cnn.train", *args]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(folder / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 3, checkpoint["epoch"]
    return checkpoint["model_state"]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict[int, dict[str, torch.Tensor]]:
    """The runs never interrupted: in one process, and in two under torchrun."""
    found = {}
    for processes in (1, 2):
        output = tmp_path_factory.mktemp(f"reference-{processes}")
        subprocess.run(train(data, output, processes), env=ENV, check=True, capture_output=True, timeout=300)
        found[processes] = weights(output)
    return found


def worker(rank: int, attempt: int = 0) -> int:
    """The pid of torchrun's worker of that rank and restart attempt."""
    wanted = {f"RANK={rank}".encode(), f"TORCHELASTIC_RESTART_COUNT={attempt}".encode()}
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            environ = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if wanted <= environ and b"mnist_cnn.train" in command:
            return pid
    raise AssertionError(f"no worker of rank {rank}, attempt {attempt}")


def test_a_killed_torchrun_worker_is_restarted_and_the_run_ends_as_if_it_had_not_been(
    data, reference, tmp_path
):
    command = train(data, tmp_path / "run", 2)
    command.insert(command.index("--standalone"), "--max-restarts=1")
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "run" / "metrics.json", process, timeout=120)  # epoch 1 is done: kill in epoch 2
    time.sleep(0.2)
    os.kill(worker(rank=1), signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "Resuming" in out  # the restarted group went on from last.pt
    assert_same(weights(tmp_path / "run"), reference[2])


def test_a_process_killed_at_any_moment_goes_on_with_the_same_command(data, reference, tmp_path):
    """SIGKILL at a random moment (while it trains, evaluates or writes a checkpoint), then the
    same command again, as a scheduler restarts it: the folder holds a loadable last.pt or none,
    and the run completes."""
    rng = random.Random(0)
    for attempt in range(3):
        output = tmp_path / f"run-{attempt}"
        process = subprocess.Popen(
            train(data, output), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_for(output / "run.json", process, timeout=120)
        time.sleep(rng.uniform(0.5, 4.0))
        process.kill()
        process.wait()
        if (output / "last.pt").exists():
            torch.load(output / "last.pt", weights_only=True)  # whole: the old one or the new one
        subprocess.run(train(data, output), env=ENV, check=True, capture_output=True, timeout=300)
        assert_same(weights(output), reference[1])


def test_a_full_disk_is_one_line_keeps_the_last_checkpoint_and_the_run_completes_once_there_is_room(
    data, reference, tmp_path
):
    disk = tmp_path / "disk"
    disk.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]).returncode
    ):
        pytest.skip("a small disk needs a tmpfs, which only root may mount here")
    try:
        # Room for epoch 1's files, not for epoch 2's last.pt beside them (written whole, then renamed).
        probe = tmp_path / "probe"
        subprocess.run(train(data, probe, extra=["--epochs", "1"]), env=ENV, check=True, capture_output=True)
        used = sum(-(-p.stat().st_size // 4096) * 4096 for p in probe.iterdir() if p.name != "curves.png")
        size = used + (probe / "last.pt").stat().st_size // 2
        subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)
        output = disk / "run"
        full = subprocess.run(train(data, output), env=ENV, capture_output=True, text=True, timeout=300)
        assert_one_line_error(full, f"cannot write {output / 'last.pt'}", "No space left on device")
        assert torch.load(output / "last.pt", weights_only=True)["epoch"] == 1  # the previous one, whole
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)  # room again
        subprocess.run(train(data, output), env=ENV, check=True, capture_output=True, timeout=300)
        assert_same(weights(output), reference[1])
    finally:
        subprocess.run(["umount", str(disk)])


def machine(data: Path, output: Path, port: int, cache: Path, extra: list[str] = ()) -> subprocess.Popen:
    """One of two machines, simulated: a torchrun launcher of --nnodes=2, its own data cache."""
    command = [
        *TORCHRUN,
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        *extra,
        "-m",
        "mnist_cnn.train",
        "--data-dir",
        str(data),
        *FLAGS,
        "--output-dir",
        str(output),
    ]
    env = {**ENV, "MNIST_CNN_CACHE": str(cache)}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_machines_train_the_run_of_one_machine_with_two_processes(data, reference, tmp_path):
    port = free_port()
    machines = [machine(data, tmp_path / "run", port, tmp_path / f"cache-{n}") for n in (0, 1)]
    for launcher in machines:
        out, err = launcher.communicate(timeout=300)
        assert launcher.returncode == 0, err[-3000:]
    assert_same(weights(tmp_path / "run"), reference[2])
    # Each machine's first process read the data itself, into its own cache: no shared folder needed.
    assert all(list((tmp_path / f"cache-{n}").glob("mnist-*.pt")) for n in (0, 1))


def test_a_machine_that_never_arrives_ends_the_other_after_the_timeout(data, tmp_path):
    start = time.monotonic()
    alone = machine(data, tmp_path / "run", free_port(), tmp_path / "cache", ["--rdzv-conf=join_timeout=10"])
    out, err = alone.communicate(timeout=120)
    assert alone.returncode != 0 and time.monotonic() - start < 90
    assert "RendezvousTimeoutError" in err  # torchrun's own error: no process of the run started
    assert not (tmp_path / "run").exists()


def test_a_machine_whose_process_dies_is_restarted_with_the_other_and_the_run_completes(
    data, reference, tmp_path
):
    port = free_port()
    extra = ["--max-restarts=1"]
    machines = [machine(data, tmp_path / "run", port, tmp_path / f"cache-{n}", extra) for n in (0, 1)]
    wait_for(tmp_path / "run" / "metrics.json", machines[0], timeout=120)
    time.sleep(0.2)
    os.kill(worker(rank=1), signal.SIGKILL)
    for launcher in machines:
        out, err = launcher.communicate(timeout=300)
        assert launcher.returncode == 0, err[-3000:]
    assert_same(weights(tmp_path / "run"), reference[2])


def test_thirty_two_process_runs_leave_their_process_group_cleanly(data, tmp_path):
    """Each of two processes releases the process group while the interpreter is whole; a gloo
    thread outliving it once aborted a process at exit ("terminate called without an active
    exception", exit status -6)."""
    for n in range(30):
        output = tmp_path / f"run-{n}"
        command = train(data, output, 2, ["--epochs", "1", "--dry-run"])
        result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "terminate called" not in result.stderr, (n, result.stderr[-2000:])
        shutil.rmtree(output, ignore_errors=True)


PROBE = """
import gc, sys
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from mnist_cnn import TrainConfig, fit

alive = []
destroy = dist.destroy_process_group

def counting_destroy(*args, **kwargs):
    gc.collect()
    alive.append(sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects()))
    return destroy(*args, **kwargs)

dist.destroy_process_group = counting_destroy
fit(TrainConfig(data_dir=sys.argv[1], epochs=1, batch_size=256, threads=1, device="cpu", dry_run=True))
print("DDP modules alive when the group was destroyed:", alive)
"""


def test_no_ddp_module_holds_the_process_group_when_it_is_destroyed(data, tmp_path):
    """The abort's cause: DDP keeps a reference to the gloo process group, and a group that outlives
    destroy_process_group is torn down with the interpreter, whose gloo threads may then abort the
    process. fit lets go of the DDP module before the group is destroyed."""
    (tmp_path / "probe.py").write_text(PROBE)
    command = [*TORCHRUN, "--standalone", "--nproc_per_node=2", str(tmp_path / "probe.py"), str(data)]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("DDP modules alive when the group was destroyed: [0]") == 2, result.stdout
