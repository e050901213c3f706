"""scripts/benchmark.py, the speed measurement behind the README's table, end to end on the
synthetic data: it must keep running, and pair each contender with the classic run of the same
repetition. (It asserts no time: timings live in the benchmark's own output.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import NO_NETWORK

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.slow
def test_benchmark_measures_every_contender_against_the_classic_pipeline(mnist_dir, tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, str(SCRIPTS / "benchmark.py"), "--data-dir", str(mnist_dir), "--repeats", "2"]
    result = subprocess.run(
        [
            *command,
            "--contenders",
            "default",
            "nchw",
            "--process-repeats",
            "1",
            "--busy",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **NO_NETWORK},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    bench = json.loads(out.read_text())
    assert list(bench["results"]) == ["classic", "default", "nchw"]  # the baseline always runs
    classic = bench["results"]["classic"]["train_seconds"]
    for name, r in bench["results"].items():
        assert len(r["train_seconds"]) == 2 and all(0 <= a <= 1 for a in r["test_accuracy"])
        assert r["speedups"] == [c / s for c, s in zip(classic, r["train_seconds"], strict=True)]
        assert f"| {name} |" in result.stdout
    assert bench["results"]["classic"]["speedups"] == [1.0, 1.0]
    assert bench["machine"]["cores"] == os.cpu_count() and "torch" in bench["machine"]
    processes = bench["processes"]
    for name in ("ours_to_98", "classic_to_98", "epoch_wall", "epoch_train", "predict", "import_torch"):
        assert len(processes[name]) == 1, name
    wall, train = processes["epoch_wall"][0], processes["epoch_train"][0]
    assert 0 < train < wall and processes["rest_fractions"] == [(wall - train) / train]
    assert processes["predict_ratios"] == [processes["predict"][0] / processes["import_torch"][0]]
    assert "| `predict` on one image |" in result.stdout
    busy = bench["busy"]
    assert [len(busy[k]) for k in ("quiet_auto", "quiet_fixed", "busy_auto", "busy_fixed")] == [1, 1, 1, 0]
    assert busy["busy_over_quiet_auto"] == [busy["busy_auto"][0] / busy["quiet_auto"][0]]
    assert "beside the other process" in result.stdout


@pytest.mark.slow
def test_startup_times_every_phase_of_a_run(mnist_dir):
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "startup.py"), "--data-dir", str(mnist_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **NO_NETWORK},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "seconds" not in line]
    assert len(rows) == 10 and rows[0].startswith("| python and `import torch`")
    assert rows[-1].startswith("| all but training |")
    assert all(float(row.rsplit("|", 2)[1]) >= 0 for row in rows)
