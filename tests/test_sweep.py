"""scripts/accuracy.py and scripts/ablation.py with --jobs: seeds (and rows) train in parallel
processes, with the same results as one after another at the same thread count."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_cnn.sweep import job_threads, recipe_changes, recipe_config

from .helpers import NO_NETWORK

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def sweep(script: str, args: list[str], out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **NO_NETWORK},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, args",
    [
        ("accuracy.py", ["--seeds", "1", "2", "3", "--val-split", "64"]),
        ("ablation.py", ["--epochs", "1", "--seeds", "1", "2", "--rows", "1", "6", "7", "--val-split", "64"]),
    ],
)
def test_parallel_jobs_give_the_results_of_one_after_another(script, args, mnist_dir, tmp_path):
    common = [*args, "--data-dir", str(mnist_dir), "--threads", "1"]
    alone = sweep(script, [*common, "--jobs", "1"], tmp_path / "alone.json")
    together = sweep(script, [*common, "--jobs", "2"], tmp_path / "together.json")
    if script == "accuracy.py":
        assert together["accuracy"] == alone["accuracy"] and len(alone["accuracy"]) == 3
        assert alone["config"]["val_split"] == 64  # a train flag, passed through
    else:
        rows = alone["rows"]  # three rows, each trained with a validation split and without
        assert sorted(name.split(":")[0] for name in rows) == ["test"] * 3 + ["val"] * 3
        assert all(together["rows"][n]["accuracy"] == rows[n]["accuracy"] for n in rows)
        assert {rows[n]["config"]["val_split"] for n in rows} == {0, 64}
    assert together["wall_seconds"] > 0


def test_parallel_jobs_share_the_cores():
    assert job_threads(1, None) is None  # alone: the package's own (auto) choice
    assert job_threads(2, 3) == 3  # told
    assert job_threads(64, None) == 1  # never none


def test_accuracy_takes_the_train_commands_flags_on_top_of_the_recipe():
    config = recipe_config(
        ["--model", "improved", "--val-split", "5000", "--batch-size", "32", "--seed", "7"]
    )
    assert (config.model, config.val_split, config.batch_size, config.epochs) == ("improved", 5000, 32, 40)
    assert config.device == "cpu" and config.output_dir is None  # a sweep writes no run folders
    assert recipe_changes(config) == {"batch_size": 32}  # the seed is --seeds'; the split, the caption's
    assert recipe_config(["--device", "cuda"]).device == "cuda"
    assert recipe_changes(recipe_config([])) == {}
