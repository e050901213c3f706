"""python -m mnist_cnn.search: the space keeps to the budget and holds the seed's and the improved
nets, trials are pruned and scored on the validation split only, and a stopped study goes on."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

optuna = pytest.importorskip("optuna", reason="the search needs optuna: pip install 'mnist-cnn[search]'")

from mnist_cnn.config import TrainConfig  # noqa: E402
from mnist_cnn.model import ImprovedNet, Net, build_model, count_parameters  # noqa: E402
from mnist_cnn.search import describe_trial  # noqa: E402
from mnist_cnn.study import (  # noqa: E402
    BUDGET,
    KNOWN_POINTS,
    WIDEST,
    WIDTH_KNOBS,
    Search,
    holding,
    last_width,
    objective,
    suggest,
)

from .helpers import NO_NETWORK, assert_one_line_error, run_main, write_mnist  # noqa: E402

SEARCH = "mnist_cnn.search"


def test_the_seeds_net_is_a_point_of_the_family():
    seed = Net()
    point = ImprovedNet(batchnorm=False, dropout=0.0, padding=False, widths=(8, 8, 16, 16, 32))
    point.load_state_dict(seed.state_dict())  # layer for layer: the same keys and shapes
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(point.eval()(x), seed.eval()(x))


@pytest.mark.parametrize("name, parameters", [("improved", 8880), ("seed", 9032)])
def test_the_known_nets_are_what_the_space_makes_of_their_points(name, parameters):
    config = suggest(optuna.trial.FixedTrial(KNOWN_POINTS[name]), Search())
    assert count_parameters(ImprovedNet(**config.model_args)) == parameters
    assert config.val_split > 0  # scored on held-out training images, never the test set


def test_the_separable_net_is_the_point_the_search_found():
    # Trial 2 of the separable study (docs/search.md), with the improved net's weight decay, which
    # stands in for the trial's lost one: --model separable is that point of the space, net and recipe.
    point = {
        **{"separable": True, "batchnorm": True, "padding": False, "dropout": 0.1},
        **{"w1": 19, "w2": 39, "w3": 50, "w4": 47, "lr": 0.0336, "weight_decay": 2e-4, "augment": True},
    }
    config = suggest(optuna.trial.FixedTrial(point), Search(epochs=40))
    named = TrainConfig(model="separable")
    assert str(ImprovedNet(**config.model_args).features) == str(build_model("separable").features)
    assert count_parameters(build_model("separable")) == 8982
    recipe = ("epochs", "lr", "weight_decay", "augment", "schedule", "batch_size", "momentum")
    assert [getattr(named, k) for k in recipe] == [getattr(config, k) for k in recipe]


def test_a_trials_line_names_every_knob_it_drew():
    # The report is where a trial's recipe is read back: it once left out weight_decay ("w...").
    point = {**KNOWN_POINTS["improved"], "weight_decay": 3e-4}
    config = suggest(optuna.trial.FixedTrial(point), Search())
    row = {"number": 0, "val_accuracy": 0.99, "parameters": 8880, "params": point}
    line = describe_trial({**row, "model_args": config.model_args})
    assert "widths 8-8-16-16-30" in line and "weight_decay 0.0003" in line
    assert all(f"{knob} " in line for knob in point.keys() - set(WIDTH_KNOBS))


def test_separable_convolutions_buy_width():
    widths = (8, 16, 32, 32, 32)
    full, separable = ImprovedNet(widths=widths), ImprovedNet(widths=widths, separable=True)
    assert count_parameters(separable) < count_parameters(full) / 3
    assert separable(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def random_draws(seed: int, separable: bool) -> optuna.samplers.BaseSampler:
    """Random points of the space, all separable or all not."""
    return holding({"separable": separable}, optuna.samplers.RandomSampler(seed=seed))


@pytest.mark.parametrize("budget", [2000, 5000, BUDGET])
@pytest.mark.parametrize("separable", [False, True])
def test_every_net_of_the_space_spends_the_budget_without_exceeding_it(budget, separable):
    study = optuna.create_study(sampler=random_draws(seed=budget, separable=separable))
    made = 0
    for _ in range(60):
        config = suggest(study.ask(), Search(max_params=budget))
        if config is None:  # the first four layers alone overran the budget
            continue
        made += 1
        args = config.model_args
        used = count_parameters(ImprovedNet(**args))
        assert used <= budget
        wider = {**args, "widths": (*args["widths"][:4], args["widths"][4] + 1)}
        assert args["widths"][4] == WIDEST or count_parameters(ImprovedNet(**wider)) > budget
    assert made >= 20


@pytest.mark.parametrize("budget", [2000, 5000, BUDGET])
def test_separable_nets_are_drawn_wide_enough_to_spend_the_budget(budget):
    # With the plain nets' widths, a separable net's last layer hit its cap near 5,000 parameters.
    study = optuna.create_study(sampler=random_draws(seed=0, separable=True))
    drawn = [suggest(study.ask(), Search(max_params=budget)) for _ in range(60)]
    used = sorted(count_parameters(ImprovedNet(**config.model_args)) for config in drawn if config)
    assert used[len(used) // 2] >= 0.95 * budget


def test_no_width_when_the_first_layers_overrun_the_budget():
    args = {"widths": (64, 64, 64, 64, 1)}
    assert last_width(args, 9032) == 0


@pytest.fixture
def held_out_only(tmp_path) -> Path:
    """Synthetic MNIST whose test files are garbage: a search that read the test set would fail.
    (torchvision wants them there, but opens only the split asked for.)"""
    root = write_mnist(tmp_path / "data", n_train=384, n_test=64)
    for test_file in (root / "MNIST" / "raw").glob("t10k-*"):
        test_file.write_bytes(b"not an IDX file")
    return root


def search_args(data: Path, out: Path, trials: int, *extra: str) -> list[str]:
    return [
        "--data-dir",
        str(data),
        "--no-cache",
        "--output-dir",
        str(out),
        "--trials",
        str(trials),
        "--epochs",
        "1",
        "--val-split",
        "128",
        "--threads",
        "1",
        *extra,
    ]


def states_of(storage: Path) -> list[tuple[int, str]]:
    try:
        with sqlite3.connect(storage) as db:
            return db.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    except sqlite3.OperationalError:  # the study's tables are not made yet
        return []


def states(out: Path) -> list[tuple[int, str]]:
    return states_of(out / "study.db")


def test_a_search_never_reads_the_test_set_and_goes_on_where_it_stopped(held_out_only, tmp_path, capfd):
    out = tmp_path / "study"
    first = run_main(SEARCH, search_args(held_out_only, out, 2), capfd)
    assert first.returncode == 0, first.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 2
    # The study starts with the improved net and the seed's net, as points of the space.
    assert [row["parameters"] for row in summary["trained"][:2]] == [8880, 9032]
    for knob, halves in summary["regions"].items():  # each on/off knob splits the trials in two
        assert halves["on"]["trials"] + halves["off"]["trials"] == 2, knob
    # Both points are plain nets: separable, at one value, splits nothing and is left out.
    assert set(summary["regions"]) == {"batchnorm", "padding", "augment"}
    assert summary["trial_epochs"] == len(summary["trained"]) == 2  # one epoch each
    best = json.loads((out / "best.json").read_text())
    assert best["val_split"] == 128 and best["model"] == "improved"
    assert best["model_args"] == summary["best"][0]["model_args"]
    assert (out / "frontier.png").stat().st_size > 0
    before = states(out)

    again = run_main(SEARCH, search_args(held_out_only, out, 3), capfd)
    assert again.returncode == 0, again.stderr
    assert states(out)[:2] == before  # the finished trials stay; one more is run
    assert len(states(out)) == 3

    report_only = run_main(SEARCH, search_args(held_out_only, out, 0), capfd)
    assert report_only.returncode == 0 and len(states(out)) == 3
    assert "study max-params-9032: " in report_only.stdout


def test_a_trial_behind_the_others_is_pruned_where_it_falls_behind(mnist_dir):
    # A pruner that prunes whatever it is shown: the trial stops after its first epoch.
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    study.enqueue_trial(KNOWN_POINTS["improved"])
    search = Search(epochs=3, val_split=128, threads=1, data_dir=str(mnist_dir))
    study.optimize(lambda trial: objective(trial, search), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]


@pytest.mark.filterwarnings("ignore:Fixed parameter lr")  # out of the space, on purpose
def test_a_diverging_trial_is_pruned_not_fatal(mnist_dir):
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({**KNOWN_POINTS["seed"], "lr": 1e12})
    search = Search(epochs=1, val_split=128, threads=1, data_dir=str(mnist_dir))
    study.optimize(lambda trial: objective(trial, search), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["outcome"] == "diverged"


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--max-params", "0"], "--max-params must be at least 1"),
        (["--trials", "-1"], "--trials must be at least 0"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--storage", "/nonexistent/folder/study.db"], "cannot open the study's storage /nonexistent"),
    ],
)
def test_bad_flags_are_one_line(flags, needle, held_out_only, tmp_path, capfd):
    result = run_main(SEARCH, search_args(held_out_only, tmp_path / "out", 1, *flags), capfd)
    assert_one_line_error(result, needle)


def test_a_study_goes_on_only_with_its_own_protocol(held_out_only, tmp_path, capfd):
    out = tmp_path / "study"
    assert run_main(SEARCH, search_args(held_out_only, out, 1), capfd).returncode == 0
    longer = run_main(SEARCH, search_args(held_out_only, out, 2, "--epochs", "2"), capfd)
    assert_one_line_error(longer, "was made with --epochs 1, not 2")
    assert len(states(out)) == 2  # the first trial, and the second point still queued: none ran
    report = run_main(SEARCH, search_args(held_out_only, out, 0, "--epochs", "2"), capfd)
    assert report.returncode == 0, report.stderr  # reporting (or confirming at 2 epochs) is fine


def test_fixed_knobs_hold_in_every_trial_and_in_the_protocol(held_out_only, tmp_path, capfd):
    out = tmp_path / "study"
    fix = ["--fix", "separable=on", "augment=off"]
    assert run_main(SEARCH, search_args(held_out_only, out, 2, *fix), capfd).returncode == 0
    summary = json.loads((out / "summary.json").read_text())
    study = optuna.load_study(study_name="max-params-9032", storage=f"sqlite:///{out / 'study.db'}")
    params = [trial.params for trial in study.trials]
    assert len(params) == 2  # the known points, neither separable, were not queued: both trials drew
    assert all(p["separable"] is True and p["augment"] is False for p in params)
    assert not {"separable", "augment"} & (set(summary["regions"]) | set(summary["importances"]))
    unfixed = run_main(SEARCH, search_args(held_out_only, out, 3), capfd)
    assert_one_line_error(unfixed, "was made with --fix separable=True augment=False, not (nothing)")
    assert len(states(out)) == 2


@pytest.mark.parametrize(
    "fix, needle",
    [
        ("width=8", "--fix width=8: no knob 'width'; the knobs are"),
        ("w1=wide", "--fix w1=wide: w1 takes an integer"),
        ("lr=fast", "--fix lr=fast: lr takes a number"),
        ("separable=maybe", "--fix separable=maybe: separable takes on or off"),
    ],
)
def test_a_bad_fixed_knob_is_one_line(fix, needle, held_out_only, tmp_path, capfd):
    result = run_main(SEARCH, search_args(held_out_only, tmp_path / "out", 1, "--fix", fix), capfd)
    assert_one_line_error(result, needle)
    assert states(tmp_path / "out") == []


def test_without_optuna_the_search_says_what_to_install(monkeypatch, tmp_path, capfd):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` fails, as where it is not installed
    result = run_main(SEARCH, ["--trials", "0", "--output-dir", str(tmp_path / "out")], capfd)
    assert_one_line_error(result, 'pip install "mnist-cnn[search]"')


def test_missing_data_is_one_line_before_any_trial(tmp_path, capfd):
    result = run_main(SEARCH, search_args(tmp_path / "nothing", tmp_path / "out", 1), capfd)
    assert_one_line_error(result, "nothing")
    assert {state for _, state in states(tmp_path / "out")} == {"WAITING"}  # queued, none started


@pytest.mark.slow
def test_two_processes_work_on_one_study(held_out_only, tmp_path):
    out = tmp_path / "study"
    result = subprocess.run(
        [sys.executable, "-m", SEARCH, *search_args(held_out_only, out, 4, "--jobs", "2")],
        capture_output=True,
        text=True,
        env={**os.environ, **NO_NETWORK},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    finished = [state for _, state in states(out) if state in ("COMPLETE", "PRUNED")]
    assert len(finished) >= 4  # each process stops once the study has four

    confirm = [sys.executable, "-m", SEARCH, *search_args(held_out_only, out, 0, "--confirm", "1", "2")]
    result = subprocess.run(
        confirm, capture_output=True, text=True, env={**os.environ, **NO_NETWORK}, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    confirmed = json.loads((out / "confirm.json").read_text())
    best = json.loads((out / "summary.json").read_text())["best"][0]
    assert list(confirmed) == ["improved", f"trial {best['number']}"]
    for row in confirmed.values():
        assert row["seeds"] == [1, 2] and len(row["accuracy"]) == 2
        assert row["final_min"] <= row["final_mean"] <= max(a[-1] for a in row["accuracy"])
    # The best trial's own run (seed 1, the study's seed) is what its confirmation trains with seed 1.
    assert confirmed[f"trial {best['number']}"]["accuracy"][0][-1] == best["val_accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("in_background", [False, True])
def test_ctrl_c_stops_a_parallel_search_with_one_line(held_out_only, tmp_path, in_background):
    out = tmp_path / "study"
    command = [
        sys.executable,
        "-m",
        SEARCH,
        *search_args(held_out_only, out, 40, "--jobs", "2", "--epochs", "10000"),
    ]
    # A shell starts a background command (`&`) with SIGINT ignored: then only the workers, whose
    # training catches it, hear a Ctrl-C, and the command learns of it from their exit statuses.
    ignore_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if in_background else None
    search = subprocess.Popen(
        command,
        env={**os.environ, **NO_NETWORK},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a terminal's Ctrl-C reaches it and its workers
        preexec_fn=ignore_sigint,
    )
    deadline = time.monotonic() + 120
    while [state for _, state in states(out)].count("RUNNING") < 2:
        assert time.monotonic() < deadline and search.poll() is None, search.communicate()
        time.sleep(0.5)
    os.killpg(search.pid, signal.SIGINT)
    _, err = search.communicate(timeout=120)
    assert search.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted"), err
    assert "failed" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_worker_hears_a_stop_signal_before_any_trial_trains(stop_signal):
    # Started with SIGINT ignored, as a shell starts a background command, and stopped while no
    # training (which has handlers of its own) runs: it must end as interrupted, not go on.
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "import mnist_cnn.study as study\n"
        "study.work = lambda search: (print('working', flush=True), time.sleep(60))\n"
        "study.worker(study.Search())\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "working\n"
    process.send_signal(stop_signal)
    assert process.wait(timeout=30) == 128 + stop_signal


@pytest.mark.slow
def test_a_trial_whose_process_died_is_tried_again(held_out_only, tmp_path):
    storage = tmp_path / "study.db"

    def search(trials: int, epochs: int) -> str:
        return (
            f"Search(trials={trials}, epochs={epochs}, val_split=128, threads=1, storage={str(storage)!r}, "
            f"study_name='s', data_dir={str(held_out_only)!r}, heartbeat_seconds=1, grace_seconds=3)"
        )

    def run(code: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **NO_NETWORK})

    # A study of 1-epoch trials, whose first trial takes hours: work() would refuse the other
    # --epochs, so this process runs its trial through objective() itself.
    dying = run(
        "from mnist_cnn.study import Search, objective, open_study; "
        f"open_study({search(2, 1)}); long = {search(1, 10_000)}; "
        "open_study(long).optimize(lambda trial: objective(trial, long), n_trials=1)"
    )
    deadline = time.monotonic() + 120
    while not (storage.exists() and (0, "RUNNING") in states_of(storage)):
        assert time.monotonic() < deadline and dying.poll() is None
        time.sleep(0.5)
    time.sleep(3)  # a few heartbeats
    dying.kill()  # no word, no chance to mark its trial failed
    dying.wait()
    time.sleep(4)  # past the grace period

    assert run(f"from mnist_cnn.study import Search, work; work({search(2, 1)})").wait(timeout=600) == 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{storage}")
    first, *others = study.trials
    assert first.state == optuna.trial.TrialState.FAIL
    retried = [t for t in others if t.params == first.params]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE
