"""The command line, end to end in a subprocess, as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import NO_NETWORK, assert_one_line_error, run


def test_dry_run_prints_the_summary_and_a_test_line_and_writes_nothing(mnist_dir, tmp_path):
    result = run("--dry-run", "--data-dir", str(mnist_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Total params: 9,032" in result.stdout
    assert "Test set: Average loss: " in result.stdout and "Accuracy: " in result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_data_dir_from_the_environment_and_save_model(mnist_dir, tmp_path):
    result = run(
        "--epochs", "1", "--batch-size", "64", "--save-model", "--output-dir", str(tmp_path / "run"),
        env_extra={"MNIST_DATA_DIR": str(mnist_dir)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "/256 (" in result.stdout  # the synthetic test split was read
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {
        "last.pt",
        "best.pt",
        "metrics.csv",
        "curves.png",
    }


@pytest.mark.slow
def test_resume_from_the_command_line(mnist_dir, tmp_path):
    first = run("--data-dir", str(mnist_dir), "--epochs", "1", "--save-model", "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()  # the default output folder, runs/<date>-<time>-<pid>
    done = run("--resume", str(run_dir / "last.pt"), "--data-dir", str(mnist_dir), "--no-progress")
    assert done.returncode == 0 and "Nothing left to do" in done.stdout and "Test set" not in done.stdout
    extended = run("--resume", str(run_dir / "last.pt"), "--epochs", "2", "--data-dir", str(mnist_dir))
    assert extended.returncode == 0, extended.stderr
    assert "Epoch 2:" in extended.stdout and "Epoch 1:" not in extended.stdout
    refused = run("--resume", str(run_dir / "last.pt"), "--lr", "9", "--data-dir", str(mnist_dir))
    assert_one_line_error(refused, "--lr")


@pytest.mark.slow
def test_missing_data_is_one_line_naming_the_folder(tmp_path):
    result = run("--data-dir", str(tmp_path / "nowhere"), "--no-progress")
    assert_one_line_error(result, str(tmp_path / "nowhere" / "MNIST" / "raw"), "t10k-labels-idx1-ubyte")


@pytest.mark.slow
def test_default_data_dir_is_data_in_the_working_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MNIST_DATA_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "mnist_cnn.train", "--dry-run"],
        capture_output=True, text=True, cwd=tmp_path, env={**env, **NO_NETWORK}, timeout=120,
    )  # fmt: skip
    assert_one_line_error(result, os.path.join("data", "MNIST", "raw"))


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--epochs", "two"], ["--lr", "-1"]])
def test_bad_flags_are_one_line_errors_from_a_real_shell_command(mnist_dir, args):
    """One argparse error and one value check, as a user's shell sees them; every bad flag is in
    tests/test_reliability.py's matrix."""
    assert_one_line_error(run(*args, "--data-dir", str(mnist_dir)), args[0])


@pytest.mark.slow
def test_help_lists_the_pytorch_examples_flags():
    result = run("--help")
    assert result.returncode == 0
    for flag in ("--batch-size", "--test-batch-size", "--epochs", "--lr", "--no-accel", "--dry-run",
                 "--seed", "--log-interval", "--save-model", "--data-dir", "--device", "--momentum"):  # fmt: skip
        assert flag in result.stdout


@pytest.mark.slow
def test_help_and_version_name_the_command_as_it_was_called():
    from mnist_cnn import __version__

    assert run("--help").stdout.startswith("usage: python -m mnist_cnn.train")
    script = Path(sys.executable).parent / "mnist-cnn-train"
    if not script.exists():
        pytest.skip(f"no console script {script}: install the package with pip install -e .")
    env = {**os.environ, **NO_NETWORK}
    result = subprocess.run([script, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.startswith("usage: mnist-cnn-train")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"mnist-cnn-train (mnist-cnn) {__version__}"


def test_a_lost_torchrun_peer_is_one_line_and_other_errors_are_not_hidden(monkeypatch, capsys):
    from mnist_cnn.cli import exit_on_error

    def failing(error):
        return exit_on_error(lambda argv: (_ for _ in ()).throw(error))

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    gloo = RuntimeError(
        "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:1937: Connection reset by peer. This is typically caused by ..."
    )
    with pytest.raises(SystemExit) as stopped:
        failing(gloo)([])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "rank 1: error: lost the other processes of the run (Read error [127.0.0.1]:1937: Connection reset by peer)\n"
    )
    with pytest.raises(RuntimeError, match="an unrelated bug"):
        failing(RuntimeError("an unrelated bug"))([])
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(RuntimeError, match="Connection reset"):  # one process: no peers to lose
        failing(gloo)([])
