"""scripts/accuracy.py and scripts/ablation.py, through submitit: with --jobs, seeds (and rows)
train in parallel processes, with the same results as one after another at the same thread
count; an interrupted sweep, run again, trains only what it had not finished."""

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnist_cnn import MnistCnnError, TrainConfig
from mnist_cnn.sweep import (
    Engine,
    Results,
    add_sweep_flags,
    engine_from_args,
    executor,
    job_threads,
    recipe_changes,
    recipe_config,
    run_key,
)

from .helpers import NO_NETWORK

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def sweep(script: str, args: list[str], out: Path) -> dict:
    """The script's --json, run in a sweep folder of its own (out's name, beside it)."""
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / script),
            *args,
            "--json",
            str(out),
            "--sweep-dir",
            str(out.with_suffix("")),
        ],
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


@pytest.mark.slow
def test_an_interrupted_sweep_run_again_trains_only_what_it_had_not_finished(mnist_dir, tmp_path):
    args = ["--seeds", "1", "2", "3", "--data-dir", str(mnist_dir), "--threads", "1", "--jobs", "1"]
    whole = sweep("accuracy.py", args, tmp_path / "whole.json")
    folder = tmp_path / "cut"
    command = [sys.executable, str(SCRIPTS / "accuracy.py"), *args, "--sweep-dir", str(folder)]
    process = subprocess.Popen(command, env={**os.environ, **NO_NETWORK}, start_new_session=True)
    results = folder / "results.jsonl"
    deadline = time.monotonic() + 300
    while not (results.exists() and results.read_text().count("\n") >= 1):
        assert process.poll() is None and time.monotonic() < deadline, "the sweep ended before it was cut"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and the run it was training
    process.wait()
    finished = results.read_text().count("\n")
    with open(results, "a") as file:  # a line cut short by the kill, as a crash mid-write leaves one
        file.write('{"key": "1234')
    again = subprocess.run(
        [*command, "--json", str(tmp_path / "again.json")],
        capture_output=True,
        text=True,
        env={**os.environ, **NO_NETWORK},
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{3 - finished} of 3 runs to train ({finished} already in" in again.stderr
    assert json.loads((tmp_path / "again.json").read_text())["accuracy"] == whole["accuracy"]


def processes_naming(text: str) -> list[int]:
    """The processes whose command line holds text."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:  # it ended while we looked
            pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the sweep's processes through /proc (Linux)")
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_sweep_stops_the_runs_under_way(mnist_dir, tmp_path, signal_number):
    folder = tmp_path / "sweep"
    command = [sys.executable, str(SCRIPTS / "accuracy.py"), "--seeds", "1", "2", "--epochs", "100"]
    command += ["--data-dir", str(mnist_dir), "--threads", "1", "--jobs", "2", "--sweep-dir", str(folder)]
    # Its own session: the signal goes to the sweep alone, as from kill or a scheduler, not to
    # its runs as a terminal's Ctrl-C would.
    sweep = subprocess.Popen(
        command, env={**os.environ, **NO_NETWORK}, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while len(processes_naming(str(folder / "jobs"))) < 4:  # two runs: submitit's controller, the run
            assert sweep.poll() is None and time.monotonic() < deadline, "the runs never started"
            time.sleep(0.2)
        time.sleep(2)  # into their training
        sweep.send_signal(signal_number)
        _, stderr = sweep.communicate(timeout=60)
        assert sweep.returncode == 128 + signal_number, stderr
        assert stderr.splitlines()[-1].startswith("interrupted: the runs under way are stopped")
        assert "Traceback" not in stderr, stderr
        deadline = time.monotonic() + 30
        while left := processes_naming(str(folder / "jobs")):
            assert time.monotonic() < deadline, f"runs left going: {left}"
            time.sleep(0.2)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
        for pid in processes_naming(str(folder / "jobs")):
            os.kill(pid, signal.SIGKILL)


def test_the_results_file_keeps_whole_lines_and_skips_a_cut_one(tmp_path):
    config = TrainConfig(epochs=1, seed=3)
    results = Results(tmp_path / "results.jsonl")
    assert results.get(config) is None
    results.add(config, [{"epoch": 1, "test_accuracy": 0.5}])
    with open(tmp_path / "results.jsonl", "a") as file:
        file.write('{"key": "cut sh')  # a sweep killed while it wrote
    again = Results(tmp_path / "results.jsonl")
    assert again.get(config) == [{"epoch": 1, "test_accuracy": 0.5}]
    assert again.get(dataclasses.replace(config, seed=4)) is None
    assert (
        run_key(config)
        == run_key(TrainConfig(epochs=1, seed=3))
        != run_key(dataclasses.replace(config, lr=0.1))
    )


def test_slurm_parameters_are_key_value_pairs():
    parser = argparse.ArgumentParser()
    add_sweep_flags(parser)
    engine = engine_from_args(
        parser.parse_args(["--cluster", "slurm", "--slurm", "partition=cpu", "time=60"]), "x"
    )
    assert engine.slurm == {"partition": "cpu", "time": "60"} and engine.folder == Path("runs/sweeps/x")
    with pytest.raises(MnistCnnError, match="--slurm takes KEY=VALUE"):
        engine_from_args(parser.parse_args(["--slurm", "partition"]), "x")


def test_a_local_run_is_not_cut_short_by_submitits_timeout(tmp_path):
    pytest.importorskip("submitit", reason="sweeps need submitit: pip install 'mnist-cnn[sweep]'")
    # submitit's local jobs time out after 2 minutes by default: a 40-epoch run was killed.
    local = executor(Engine(tmp_path, jobs=2))
    assert local.parameters["timeout_min"] >= 24 * 60
