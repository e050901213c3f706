"""Runs: a run owns its output folder, goes on where its checkpoint lies, and can be extended;
nothing a run writes destroys another run's files."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
import torch

from mnist_cnn import MnistCnnError, TrainConfig, fit, load_checkpoint, save_checkpoint
from mnist_cnn.metrics import write_metrics
from mnist_cnn.runs import RUN_FILE, claim_output_dir, resume_config, run_owner
from mnist_cnn.train import main, parse_args

from .helpers import NO_NETWORK, StopAfterFirstEpoch, stop_after_first_epoch


def folder_contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def start(*args, cwd):
    """python -m mnist_cnn.train args, started in the background with one thread."""
    env = {**os.environ, **NO_NETWORK, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mnist_cnn.train", "--threads", "1", "--no-progress", *args]
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(processes):
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def test_a_folder_that_holds_a_run_is_refused_untouched_and_overwrite_replaces_that_run(mnist_dir, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(data_dir=str(mnist_dir), batch_size=64, save_model=True, output_dir=str(out))
    fit(config)
    before = folder_contents(out)
    with pytest.raises(MnistCnnError, match="holds another run"):
        fit(dataclasses.replace(config, seed=2))
    assert folder_contents(out) == before

    history = fit(dataclasses.replace(config, seed=2, save_model=False), overwrite=True)
    assert json.loads((out / "metrics.json").read_text()) == history
    assert not (out / "best.pt").exists() and not (out / "last.pt").exists()  # gone with their run
    assert run_owner(out / RUN_FILE) != json.loads(before[RUN_FILE])["run_id"]


@pytest.mark.slow
def test_of_two_runs_started_at_once_into_one_folder_one_is_refused(mnist_dir, tmp_path):
    args = ("--data-dir", str(mnist_dir), "--save-model", "--output-dir", str(tmp_path / "run"))
    results = finish([start(*args, cwd=tmp_path) for _ in range(2)])
    assert sorted(r.returncode for r in results) == [0, 2], [r.stderr for r in results]
    refused = next(r for r in results if r.returncode == 2)
    assert "another run" in refused.stderr and "Traceback" not in refused.stderr
    assert load_checkpoint(tmp_path / "run" / "last.pt")["run_id"] == run_owner(tmp_path / "run" / RUN_FILE)


@pytest.mark.slow
def test_runs_started_in_the_same_second_get_folders_of_their_own(mnist_dir, tmp_path):
    results = finish([start("--data-dir", str(mnist_dir), cwd=tmp_path) for _ in range(2)])
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all((f / "metrics.json").exists() for f in folders)


def test_claiming_a_folder_is_exclusive_and_a_run_may_reclaim_its_own(tmp_path):
    claim_output_dir(tmp_path / "run", "a")
    claim_output_dir(tmp_path / "run", "a")  # the same run, resumed
    with pytest.raises(MnistCnnError, match="holds another run"):
        claim_output_dir(tmp_path / "run", "b")
    (tmp_path / "file").write_text("")
    with pytest.raises(MnistCnnError, match="is a file"):
        claim_output_dir(tmp_path / "file", "c")
    with pytest.raises(MnistCnnError, match="cannot be written"):
        claim_output_dir(tmp_path / "file" / "run", "c")


def test_a_moved_run_resumes_in_its_own_folder_not_the_one_it_was_started_in(
    mnist_dir, tmp_path, monkeypatch
):
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    config = TrainConfig(data_dir=str(mnist_dir), batch_size=64, epochs=2, save_model=True, output_dir="run")
    with pytest.raises(StopAfterFirstEpoch):
        fit(config, on_epoch=stop_after_first_epoch)
    moved = shutil.move(tmp_path / "a" / "run", tmp_path / "moved")
    # An unrelated run where the relative output folder would point from here.
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    fit(dataclasses.replace(config, epochs=1))
    unrelated = folder_contents(tmp_path / "b" / "run")

    main(["--resume", str(moved / "last.pt"), "--data-dir", str(mnist_dir), "--no-progress"])
    assert [m["epoch"] for m in json.loads((moved / "metrics.json").read_text())] == [1, 2]
    assert folder_contents(tmp_path / "b" / "run") == unrelated


def test_a_finished_run_has_nothing_left_to_do_until_epochs_extends_it(mnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    config = TrainConfig(
        data_dir=str(mnist_dir), batch_size=64, epochs=2, save_model=True, output_dir=str(out)
    )
    first = fit(config)
    last = str(out / "last.pt")
    main(["--resume", last, "--data-dir", str(mnist_dir), "--no-progress"])
    assert "Nothing left to do" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text()) == first

    extended = main(["--resume", last, "--epochs", "3", "--data-dir", str(mnist_dir), "--no-progress"])
    assert extended[:2] == first and extended[2]["epoch"] == 3
    # The added epoch has a one-cycle schedule of its own: it starts warming up again.
    assert extended[2]["lr"] == pytest.approx(config.lr / 25)
    saved = TrainConfig.from_dict(load_checkpoint(last)["config"])
    assert (saved.epochs, saved.schedule_start) == (3, 2)


def test_an_extension_stopped_and_resumed_ends_bitwise_like_one_that_was_not(mnist_dir, tmp_path):
    config = TrainConfig(
        data_dir=str(mnist_dir), model="improved", epochs=1, augment=True, schedule="restarts",
        batch_size=64, device="cpu", save_model=True, output_dir=str(tmp_path / "whole"),
    )  # fmt: skip
    fit(config)
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    whole, cut = tmp_path / "whole" / "last.pt", tmp_path / "cut" / "last.pt"
    fit(resume_config(whole, epochs=3), resume=whole)
    with pytest.raises(StopAfterFirstEpoch):
        fit(resume_config(cut, epochs=3), resume=cut, on_epoch=stop_after_first_epoch)
    assert load_checkpoint(cut)["epoch"] == 2
    fit(resume_config(cut), resume=cut)
    a, b = load_checkpoint(whole), load_checkpoint(cut)
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    assert [m["test_loss"] for m in a["history"]] == [m["test_loss"] for m in b["history"]]


def test_an_unfinished_run_cannot_change_its_epochs(mnist_dir, tmp_path):
    config = TrainConfig(
        data_dir=str(mnist_dir), batch_size=64, epochs=2, save_model=True, output_dir=str(tmp_path)
    )
    with pytest.raises(StopAfterFirstEpoch):
        fit(config, on_epoch=stop_after_first_epoch)
    with pytest.raises(MnistCnnError, match="only a finished run can be extended"):
        resume_config(tmp_path / "last.pt", epochs=5)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_permissions_the_umask_gives(tmp_path, umask):
    previous = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "c.pt", {"model_state": {}})
        write_metrics(tmp_path, [{"epoch": 1}])
        claim_output_dir(tmp_path / "run", "run")
    finally:
        os.umask(previous)
    for name in ("c.pt", "metrics.json", "metrics.csv", f"run/{RUN_FILE}"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_an_output_folder_that_cannot_be_written_fails_before_any_training(mnist_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit:
        main(["--data-dir", str(mnist_dir), "--output-dir", str(tmp_path / "file" / "run"), "--no-progress"])
    out, err = capsys.readouterr()
    assert exit.value.code == 2 and "Epoch 1" not in out
    assert err.count("\n") == 1 and "cannot be written" in err


def test_a_dry_run_writes_nothing(mnist_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["--dry-run", "--data-dir", str(mnist_dir), "--save-model", "--no-progress"])
    assert "Dry run: nothing written" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib_the_last_line_does_not_promise_curves(mnist_dir, tmp_path, monkeypatch, capsys):
    for module in ("matplotlib", "matplotlib.figure"):  # as if it were not installed
        monkeypatch.setitem(sys.modules, module, None)
    main(["--data-dir", str(mnist_dir), "--output-dir", str(tmp_path / "run"), "--no-progress"])
    last_line = capsys.readouterr().out.splitlines()[-1]
    assert last_line.startswith("Metrics (no curves") and "curves.png" not in os.listdir(tmp_path / "run")


def test_overwrite_in_the_runs_own_folder_keeps_its_checkpoints(tmp_path):
    claim_output_dir(tmp_path, "old")
    (tmp_path / "best.pt").write_bytes(b"the best epoch")
    claim_output_dir(tmp_path, "new", overwrite=True, own=True)
    assert (tmp_path / "best.pt").read_bytes() == b"the best epoch" and run_owner(
        tmp_path / RUN_FILE
    ) == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", RUN_FILE]  # no temporary file left


def test_a_checkpoint_from_before_run_ids_can_be_resumed_again_after_a_failed_resume(mnist_dir, tmp_path):
    config = TrainConfig(
        data_dir=str(mnist_dir), batch_size=64, epochs=2, save_model=True, output_dir=str(tmp_path)
    )
    with pytest.raises(StopAfterFirstEpoch):
        fit(config, on_epoch=stop_after_first_epoch)
    last = tmp_path / "last.pt"
    old = load_checkpoint(last)
    del old["run_id"]
    save_checkpoint(last, old)
    (tmp_path / RUN_FILE).unlink()

    def die(run):
        raise StopAfterFirstEpoch  # the first resume dies before it saves anything

    with pytest.raises(StopAfterFirstEpoch):
        fit(resume_config(last), resume=last, on_start=die)
    history = fit(resume_config(last), resume=last)  # not refused as "another run"
    assert [m["epoch"] for m in history] == [1, 2]


def test_resume_auto_starts_where_there_is_no_last_pt_and_goes_on_where_there_is_one(
    mnist_dir, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    flags = ["--data-dir", str(mnist_dir), "--epochs", "2", "--resume", "auto", "--output-dir", str(out)]
    monkeypatch.setattr(sys, "argv", ["mnist_cnn.train", *flags])
    fresh = parse_args(flags)
    assert fresh.resume is None and fresh.config.save_model and not fresh.overwrite  # saves to go on from
    with pytest.raises(StopAfterFirstEpoch):
        fit(fresh.config, on_epoch=stop_after_first_epoch)
    again = parse_args(flags)
    assert again.resume is not None and again.resume.path == out / "last.pt"
    fit(again.config, resume=again.resume)
    whole = fit(dataclasses.replace(fresh.config, output_dir=str(tmp_path / "whole")))
    assert [m["test_loss"] for m in load_checkpoint(out / "last.pt")["history"]] == [
        m["test_loss"] for m in whole
    ]


def test_resume_auto_takes_over_only_its_own_earlier_attempt(mnist_dir, tmp_path, monkeypatch, capfd):
    flags = ["--data-dir", str(mnist_dir), "--resume", "auto", "--output-dir", str(tmp_path), "--no-progress"]
    monkeypatch.setattr(sys, "argv", ["mnist_cnn.train", *flags])
    (tmp_path / RUN_FILE).write_text(json.dumps({"run_id": "earlier", "command": sys.argv}))
    assert parse_args(flags).overwrite  # only run.json, of this command: an attempt that saved nothing
    (tmp_path / RUN_FILE).write_text(
        json.dumps({"run_id": "other", "command": ["mnist_cnn.train", "--lr", "9"]})
    )
    assert not parse_args(flags).overwrite
    with pytest.raises(SystemExit):
        main(flags)
    assert "holds another run" in capfd.readouterr().err
    with pytest.raises(MnistCnnError, match="--resume auto goes on in --output-dir"):
        parse_args(["--resume", "auto"])
