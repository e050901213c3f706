"""Training under torchrun: 2 CPU processes (gloo) on the synthetic data, against one process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnist_cnn import MnistCnnError, distributed, load_checkpoint
from mnist_cnn.distributed import check_batch_shares, share

from .helpers import NO_NETWORK

# Runs the training command, then saves the trained net of this process as rank<RANK>.pt in the
# folder given first, so the test can compare what every process ends with, and what it wrote
# (checkpoints, metrics, curves) as rank<RANK>.writes.
WORKER = """
import os, sys, torch
from mnist_cnn import runs, train
built, writes = [], []
build = train.build_model
train.build_model = lambda *a, **k: built.append(build(*a, **k)) or built[-1]
for name in ("save_checkpoint", "write_metrics", "draw_curves", "claim_output_dir"):
    write = getattr(runs, name)
    setattr(runs, name, lambda *a, _write=write, _name=name, **k: writes.append(_name) or _write(*a, **k))
train.main(sys.argv[2:])
rank = os.environ.get("RANK", 0)
torch.save(built[-1].state_dict(), os.path.join(sys.argv[1], f"rank{rank}.pt"))
with open(os.path.join(sys.argv[1], f"rank{rank}.writes"), "w") as file:
    file.write("\\n".join(writes))
"""


def run_worker(folder: Path, argv: list[str], processes: int) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    script = folder / "worker.py"
    script.write_text(WORKER)
    return subprocess.run(
        [sys.executable, *(launcher if processes > 1 else []), str(script), str(folder), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **NO_NETWORK, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [["--augment"], ["--model", "improved", "--epochs", "1"]],
    ids=["seed-augment", "improved-batchnorm"],
)
def test_two_processes_train_one_model_and_write_one_set_of_outputs(flags, mnist_dir, tmp_path):
    argv = ["--data-dir", str(mnist_dir), "--batch-size", "32", "--save-model", "--no-progress", *flags]
    runs = {}
    for processes in (1, 2):
        folder = tmp_path / f"x{processes}"
        folder.mkdir()
        result = run_worker(folder, [*argv, "--output-dir", str(folder / "run")], processes)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[processes] = folder, result

    folder, result = runs[2]
    rank0, rank1 = (torch.load(folder / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "the processes' nets differ"
    # Only rank 0 prints and writes: one summary, one test line, one set of files.
    assert result.stdout.count("Total params") == 1 and result.stdout.count("Test set:") == 1
    assert "cpu x 2 processes" in result.stdout
    assert (folder / "rank0.writes").read_text() and not (folder / "rank1.writes").read_text()
    assert {p.name for p in (folder / "run").iterdir()} == {
        "run.json", "last.pt", "best.pt", "metrics.json", "metrics.csv", "curves.png"
    }  # fmt: skip
    assert all(
        torch.equal(v, load_checkpoint(folder / "run" / "last.pt")["model_state"][k])
        for k, v in rank0.items()
    )

    if "improved" in flags:
        return  # BatchNorm's statistics are per share of the batch: not one process's
    # The same global batches, learning rates and distortions as one process: the same net, up
    # to the order in which the gradients were summed.
    single = torch.load(runs[1][0] / "rank0.pt", weights_only=True)
    assert all(torch.allclose(rank0[k], single[k], atol=1e-5) for k in single)


def test_every_process_gets_a_share_of_every_batch(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert share(torch.arange(10)).tolist() == [4, 5, 6]  # 10 = 4 + 3 + 3
    check_batch_shares(100, 64)  # 64 and 36 images: enough for 3
    with pytest.raises(MnistCnnError, match="--batch-size 64 cannot be shared among 3 processes"):
        check_batch_shares(65, 64)  # the last batch holds 1 image
    with pytest.raises(MnistCnnError, match="--batch-size 2 cannot"):
        check_batch_shares(100, 2)


def test_one_process_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    x = torch.arange(5)
    assert share(x) is x and distributed.world_size() == 1 and distributed.launched_processes() == 1


def test_outside_the_process_group_the_helpers_act_for_one_process(monkeypatch):
    # Under torchrun, after fit has left its process group (a script evaluating afterwards, say).
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    x = torch.arange(5.0)
    assert share(x) is x and distributed.all_reduce(x) is x and distributed.world_size() == 1
    assert distributed.launched_processes() == 2 and not distributed.is_main()


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(MnistCnnError, match="process 3 of this machine has no GPU of its own: it has 2"):
        distributed.local_device(torch.device("cuda"))
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.local_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert distributed.local_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.slow
def test_sigterm_stops_every_process_at_the_same_batch_and_rank_0_saves_the_run(tmp_path):
    from .helpers import write_mnist

    data = write_mnist(tmp_path / "data", n_train=2048, n_test=64)
    out = tmp_path / "run"
    argv = [
        "--data-dir",
        str(data),
        "--batch-size",
        "16",
        "--epochs",
        "20",
        "--no-progress",
        "--output-dir",
        str(out),
    ]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "mnist_cnn.train",
            *argv,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **NO_NETWORK},
    )
    deadline = time.monotonic() + 120
    while not (out / "metrics.json").exists():  # epoch 1 done: training is under way
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "interrupted: SIGTERM after batch" in stderr and "go on with" in stderr  # rank 0
    assert "rank 1: interrupted: SIGTERM after batch" in stderr and "rank 0 saves the run" in stderr
    saved = load_checkpoint(out / "last.pt")
    step = saved["position"]["step"]
    assert f"after batch {step} of epoch {saved['epoch'] + 1}" in stderr.split("rank 1:")[1]  # the same batch
    assert "mnist_cnn/" not in stderr  # no traceback of ours (torchrun's launcher prints its own)
    # The two processes' run goes on in one: the same global batches, so the same run.
    resumed = subprocess.run(
        [sys.executable, "-m", "mnist_cnn.train", "--resume", str(out / "last.pt"), "--no-progress"],
        capture_output=True,
        text=True,
        env={**os.environ, **NO_NETWORK},
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert [m["epoch"] for m in json.loads((out / "metrics.json").read_text())] == list(range(1, 21))
