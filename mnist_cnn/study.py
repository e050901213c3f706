"""The study behind `python -m mnist_cnn.search`: the space of nets and recipes, one trial, the
study's storage and the processes that work on it, and what the study found.

An Optuna study over the family of `ImprovedNet` (the seed's net and the improved net are two of
its points) and the recipe's main knobs. Each trial trains one net for Search.epochs on the
training split less Search.val_split held-out images, and is scored on those: the test set is
never read. A trial in the worst third at an epoch (from the second on) is stopped there
(pruned). The last 3x3 layer takes whatever width the budget leaves, so every net spends the
budget whole.

The study lives in Optuna's storage: a SQLite file, or any database URL Optuna takes
(PostgreSQL for machines that share a study). Working on it again goes on where it stopped,
until Search.trials trials have finished; several processes or machines pointing at one storage
work on it together. A trial cut short by Ctrl-C or a crash is lost (it is marked failed; one
whose process died is noticed by its missing heartbeat and run again). Optuna is imported only
here, and only when a study is opened.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import signal
import statistics
import sys
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import TrainConfig
from .errors import MnistCnnError, TrainingDiverged, TrainingInterrupted, first_line
from .files import write_atomic
from .model import ImprovedNet, count_parameters
from .runs import STOP_SIGNALS
from .train import fit

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

BUDGET = 9032  # the seed net's parameters: the budget the exercise sets
WIDEST = 128  # the last 3x3 layer's width at most, however much budget is left
# How much wider a separable net's layers may be drawn: a separable 3x3 convolution of c channels
# to c costs 9c + c^2 parameters, against 9c^2, so at the widths here (c of 16 to 40) the same
# parameters pay for about 2.5 times the channels.
SEPARABLE_WIDTH = 2.5

# What each of the space's knobs is (the docs' table of the space is made from suggest's draws).
KNOBS: dict[str, str] = {
    "separable": "depthwise-separable 3x3 convolutions after the first (their widths' ranges are wider)",
    "batchnorm": "BatchNorm after every 3x3 convolution",
    "padding": "padding=1 in the two full-resolution convolutions",
    "dropout": "Dropout after each pooling",
    "w1": "the first convolution's channels",
    "w2": "the second's",
    "w3": "the third's (after the first pooling)",
    "w4": "the fourth's",
    "lr": "the peak learning rate (restarts schedule, SGD with Nesterov momentum)",
    "weight_decay": "L2 weight decay",
    "augment": "random rotation, shift and scale of the training images",
}
WIDTH_KNOBS = ("w1", "w2", "w3", "w4")  # the fifth width is what the parameter budget leaves

# The two nets of the family the project trained before the search: each study tries them first.
KNOWN_POINTS: dict[str, dict[str, Any]] = {
    "improved": {
        "batchnorm": True,
        "padding": True,
        "separable": False,
        "dropout": 0.05,
        "w1": 8,
        "w2": 8,
        "w3": 16,
        "w4": 16,
        "lr": 0.1,
        "weight_decay": 2e-4,
        "augment": True,
    },
    "seed": {
        "batchnorm": False,
        "padding": False,
        "separable": False,
        "dropout": 0.0,
        "w1": 8,
        "w2": 8,
        "w3": 16,
        "w4": 16,
        "lr": 0.03,
        "weight_decay": 2e-5,
        "augment": False,
    },
}


@dataclass(frozen=True)
class Search:
    """One search: plain data, the same in every process that works on the study."""

    max_params: int = BUDGET
    trials: int = 40  # finished trials (complete or pruned) the study should reach
    epochs: int = 7  # each trial's: restart cycles of 1, 2 and 4 epochs
    val_split: int = 5000
    seed: int = 1  # every trial's training seed: the nets differ, not the draw
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)  # knobs held at one value (--fix)
    storage: str = ""
    study_name: str = ""
    threads: int | None = None
    device: str = "cpu"
    data_dir: str | None = None
    cache: bool = True
    heartbeat_seconds: int = 30  # how often a running trial says it is alive
    grace_seconds: int = 120  # silence after which it is taken for dead, marked failed and queued again

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Search:
        """The search a study was made by (stored in it): keys of other versions are ignored."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def base_config(self) -> TrainConfig:
        """What every trial shares: the improved net's recipe, cut to --epochs."""
        return TrainConfig(
            model="improved",
            epochs=self.epochs,
            val_split=self.val_split,
            seed=self.seed,
            threads=self.threads,
            device=self.device,
            data_dir=self.data_dir,
            cache=self.cache,
        )


# ---------------------------------------------------------------------------------------------
# The space


def last_width(model_args: dict[str, Any], max_params: int) -> int:
    """The widest last 3x3 layer (at most WIDEST) that keeps the net of model_args (with
    widths[:4] set) within max_params: 0 when not even one channel fits."""

    def parameters(width: int) -> int:
        widths = (*model_args["widths"][:4], width)
        return count_parameters(ImprovedNet(**{**model_args, "widths": widths}))

    # A net's parameters grow by the same amount with each channel of its last 3x3 layer.
    one, per_channel = parameters(1), parameters(2) - parameters(1)
    if one > max_params:
        return 0
    return min(WIDEST, 1 + (max_params - one) // per_channel)


def suggest(trial: optuna.trial.BaseTrial, search: Search) -> TrainConfig | None:
    """The trial's net and recipe, from the space; None when the widths it drew leave no room in
    the budget for the last layer."""
    separable = trial.suggest_categorical("separable", [False, True])
    scale = (search.max_params / BUDGET) ** 0.5  # widths grow as the square root of parameters
    scale *= SEPARABLE_WIDTH if separable else 1
    low, high = max(2, round(4 * scale)), max(4, round(16 * scale))
    model_args: dict[str, Any] = {
        "batchnorm": trial.suggest_categorical("batchnorm", [True, False]),
        "padding": trial.suggest_categorical("padding", [True, False]),
        "separable": separable,
        "dropout": trial.suggest_float("dropout", 0.0, 0.15, step=0.05),
        "widths": (
            trial.suggest_int("w1", low, high),
            trial.suggest_int("w2", low, high),
            trial.suggest_int("w3", 2 * low, int(2.5 * high)),
            trial.suggest_int("w4", 2 * low, int(2.5 * high)),
        ),
    }
    recipe: dict[str, Any] = {
        "lr": trial.suggest_float("lr", 0.02, 0.3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 2e-5, 1e-3, log=True),
        "augment": trial.suggest_categorical("augment", [True, False]),
    }
    width = last_width(model_args, search.max_params)
    if width < 2:
        return None
    model_args["widths"] = (*model_args["widths"], width)
    return replace(search.base_config(), model_args=model_args, **recipe)


# ---------------------------------------------------------------------------------------------
# One trial, and the processes that run them


def objective(trial: optuna.Trial, search: Search) -> float:
    """Train the trial's net; its score is the validation accuracy at the final epoch."""
    import optuna

    config = suggest(trial, search)
    if config is None:
        trial.set_user_attr("outcome", "over budget")
        raise optuna.TrialPruned("no room in the budget for the last layer")
    net = ImprovedNet(**config.model_args)
    trial.set_user_attr("parameters", count_parameters(net))
    trial.set_user_attr("model_args", {**config.model_args, "widths": list(config.model_args["widths"])})
    seconds: list[float] = []

    def on_epoch(metrics: dict) -> None:
        seconds.append(metrics["train_seconds"])
        trial.set_user_attr("train_seconds", seconds)
        trial.report(metrics["val_accuracy"], metrics["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {metrics['epoch']}")

    try:
        history = fit(config, on_epoch=on_epoch)
    except TrainingDiverged:
        trial.set_user_attr("outcome", "diverged")
        raise optuna.TrialPruned("the training loss diverged") from None
    return history[-1]["val_accuracy"]


def storage_url(storage: str) -> str:
    """A database URL as given; a file's path as the URL of a SQLite file."""
    return storage if "://" in storage else f"sqlite:///{Path(storage).resolve()}"


def retry_stale_trials() -> dict[str, Any]:
    """RDBStorage's argument that queues again, once, the trial of a process that stopped beating."""
    try:  # optuna 5's name
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        return {"heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=1)}
    except ImportError:
        from optuna.storages import RetryFailedTrialCallback

        return {"failed_trial_callback": RetryFailedTrialCallback(max_retry=1)}


def holding(fixed: dict[str, Any], sampler: optuna.samplers.BaseSampler) -> optuna.samplers.BaseSampler:
    """sampler, with the knobs of fixed held at their values (--fix)."""
    import optuna

    if not fixed:
        return sampler
    with warnings.catch_warnings():  # PartialFixedSampler is "experimental" in optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.PartialFixedSampler(fixed, sampler)


def open_study(search: Search) -> optuna.Study:
    """The study in search.storage, made when it is not there yet (with the known points queued
    as its first trials). A trial whose process stops beating for search.grace_seconds is marked
    failed and queued again."""
    try:
        import optuna
        from optuna.storages import RDBStorage
    except ImportError:
        raise MnistCnnError('the search needs Optuna: pip install "mnist-cnn[search]"') from None

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial's error is said once, below
    with warnings.catch_warnings():  # heartbeats, a liar for parallel trials: "experimental" in optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            storage = RDBStorage(
                storage_url(search.storage),
                heartbeat_interval=search.heartbeat_seconds,
                grace_period=search.grace_seconds,
                **retry_stale_trials(),
            )
        except Exception as error:  # sqlalchemy's errors: a folder that is not there, a bad URL
            raise MnistCnnError(
                f"cannot open the study's storage {search.storage}: {first_line(error)}"
            ) from None
        names = {summary.study_name for summary in optuna.get_all_study_summaries(storage)}
        sampler = holding(search.fixed, optuna.samplers.TPESampler(seed=None, constant_liar=True))
        study = optuna.create_study(
            storage=storage,
            study_name=search.study_name,
            direction="maximize",
            sampler=sampler,
            # From epoch 2 on (n_warmup_steps: the first step it may prune at), stop a trial in the
            # worst third of those that reached that epoch.
            pruner=optuna.pruners.PercentilePruner(33.0, n_startup_trials=6, n_warmup_steps=2),
            load_if_exists=True,
        )
        if search.study_name not in names:
            study.set_user_attr("search", asdict(search))
            for point in KNOWN_POINTS.values():
                if all(point[knob] == value for knob, value in search.fixed.items()):
                    study.enqueue_trial(point, skip_if_exists=True)
    return study


# What a trial's score depends on besides its point: every trial of a study runs with the study's.
PROTOCOL: dict[str, str] = {
    "max_params": "--max-params",
    "epochs": "--epochs",
    "val_split": "--val-split",
    "seed": "--seed",
    "fixed": "--fix",
}


SWITCH = {"on": True, "true": True, "off": False, "false": False}  # --fix's words for an on/off knob


def fixed_knobs(texts: list[str]) -> dict[str, Any]:
    """--fix's KNOB=VALUE texts as knobs and values of the knob's type: on/off (or true/false) for
    a switch, a number for the rest."""
    fixed: dict[str, Any] = {}
    for text in texts:
        knob, _, value = text.partition("=")
        if knob not in KNOBS:
            raise MnistCnnError(f"--fix {text}: no knob {knob!r}; the knobs are {', '.join(KNOBS)}")
        kind = type(KNOWN_POINTS["improved"][knob])  # the knob's values are of the known points' types
        try:
            fixed[knob] = SWITCH[value.lower()] if kind is bool else kind(value)
        except (KeyError, ValueError):
            wanted = "on or off" if kind is bool else f"a{'n integer' if kind is int else ' number'}"
            raise MnistCnnError(f"--fix {text}: {knob} takes {wanted}, as in --fix {knob}=...") from None
    return fixed


def protocol_value(field: str, value: Any) -> str:
    """A protocol field's value as its flag is given: --fix's as KNOB=VALUE words."""
    if field == "fixed":
        return " ".join(f"{knob}={value}" for knob, value in value.items()) or "(nothing)"
    return str(value)


def check_protocol(study: optuna.Study, search: Search) -> None:
    """Refuse to add trials to a study made with another protocol: their scores would not compare
    with its trials'. (Reporting on it, or confirming its best net, is fine.)"""
    made = {"fixed": {}, **study.user_attrs.get("search", {})}  # studies made before --fix fixed nothing
    for field, flag in PROTOCOL.items():
        if field in made and made[field] != getattr(search, field):
            then, now = protocol_value(field, made[field]), protocol_value(field, getattr(search, field))
            raise MnistCnnError(
                f"study {search.study_name} in {search.storage} was made with {flag} {then}, not "
                f"{now}: go on with {flag} {then}, or give another --study-name"
            )


FINISHED = ("COMPLETE", "PRUNED")


def finished(study: optuna.Study) -> int:
    """Trials that ran to their end or were pruned: what --trials counts."""
    return sum(t.state.name in FINISHED for t in study.get_trials(deepcopy=False))


def work(search: Search) -> None:
    """Run trials of the study until it has search.trials finished ones."""
    import optuna
    from optuna.study import MaxTrialsCallback

    study = open_study(search)
    if finished(study) >= search.trials:
        return
    check_protocol(study, search)
    states = tuple(getattr(optuna.trial.TrialState, name) for name in FINISHED)
    study.optimize(
        lambda trial: objective(trial, search),
        callbacks=[MaxTrialsCallback(search.trials, states=states)],
        gc_after_trial=True,
    )


def stop_now(signal_number: int, frame: object) -> None:
    """A worker's handler for a stop signal outside training (fit installs its own while it trains)."""
    raise TrainingInterrupted("stopped outside a trial's training", signal_number)


def worker(search: Search) -> None:
    """A --jobs process: work, one line on stderr for an error (the parent says the rest)."""
    # Heard from the start, not only once fit trains: a shell starts a background command with
    # SIGINT ignored, and a signal before fit's handlers (while a trial loads its data) was lost.
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, stop_now)
    try:
        work(search)
    except TrainingInterrupted as error:  # Ctrl-C: the parent says so, once
        raise SystemExit(128 + error.signal_number) from None
    except MnistCnnError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def work_in_processes(search: Search, jobs: int) -> None:
    """work() in jobs processes side by side, each with search.threads threads."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state forked
    processes = [context.Process(target=worker, args=(search,)) for _ in range(jobs)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:  # the workers had the signal too: let them stop their trials
        for process in processes:
            process.join()
        raise
    # This process may not hear a Ctrl-C that its workers do (a shell starts a background command
    # with SIGINT ignored; training catches it): workers ended by a signal that stops training
    # (128 + the signal) mean the search was interrupted, not that it failed.
    failed = [code for code in (process.exitcode for process in processes) if code]
    interrupts = {128 + s for s in STOP_SIGNALS}
    if failed and set(failed) <= interrupts:
        raise TrainingInterrupted("the running trials are lost; the same command goes on", max(failed) - 128)
    if failed:
        raise MnistCnnError(f"a search process failed (exit status {max(failed)}); see above")


# ---------------------------------------------------------------------------------------------
# What the study found


def trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A finished trial as plain data."""
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "val_accuracy": trial.value,
        "epochs": len(trial.intermediate_values),
        "last_val_accuracy": trial.intermediate_values[max(trial.intermediate_values)]
        if trial.intermediate_values
        else None,
        "parameters": trial.user_attrs.get("parameters"),
        "outcome": trial.user_attrs.get("outcome"),
        "train_seconds": sum(trial.user_attrs.get("train_seconds", [])),
        "params": trial.params,
        "model_args": trial.user_attrs.get("model_args"),
    }


def regions(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """What each half of the space gave, for each on/off knob the trials drew both ways (not one
    held at a value): the finished trials with it on and with it off, how many of those were
    pruned, and the complete ones' median and best score."""
    halves: dict[str, dict[str, dict[str, Any]]] = {}
    for knob in KNOBS:
        if {r["params"][knob] for r in rows if knob in r["params"]} != {True, False}:
            continue
        for value in (True, False):
            group = [r for r in rows if r["params"].get(knob) is value and r["state"] != "fail"]
            scores = [r["val_accuracy"] for r in group if r["state"] == "complete"]
            halves.setdefault(knob, {})["on" if value else "off"] = {
                "trials": len(group),
                "pruned": sum(r["state"] == "pruned" for r in group),
                "median": statistics.median(scores) if scores else None,
                "best": max(scores, default=None),
            }
    return halves


def summarize(study: optuna.Study, top: int = 10) -> dict[str, Any]:
    """The study in numbers: its trials by state, the trial-epochs they trained and what they
    cost, the best complete trials, and each knob's importance (PED-ANOVA: which knobs the best
    trials' values set apart from the rest)."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    rows = [trial_row(t) for t in trials if t.state.name in (*FINISHED, "FAIL")]
    complete = sorted(
        (r for r in rows if r["state"] == "complete"), key=lambda r: r["val_accuracy"], reverse=True
    )
    fixed = study.user_attrs.get("search", {}).get("fixed", {})
    drawn = [
        name
        for name in optuna.search_space.intersection_search_space(
            study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        )
        if name not in fixed  # a knob held at one value sets no trial apart
    ]
    try:
        importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), params=drawn
        )
    except (RuntimeError, ValueError):  # too few complete trials to say
        importances = {}
    return {
        "study": study.study_name,
        "search": study.user_attrs.get("search", {}),
        "trials": {state: sum(r["state"] == state for r in rows) for state in ("complete", "pruned", "fail")},
        "trial_epochs": sum(r["epochs"] for r in rows),
        "train_seconds": sum(r["train_seconds"] for r in rows),
        "best": complete[:top],
        "importances": importances,
        "regions": regions(rows),
        "trained": [r for r in rows if r["parameters"] is not None and r["last_val_accuracy"] is not None],
    }


def point_config(params: dict[str, Any], search: Search) -> TrainConfig:
    """The run of a point of the space (a trial's params), as its trial trained it."""
    import optuna

    config = suggest(optuna.trial.FixedTrial(params), search)
    if config is None:
        raise MnistCnnError(f"the point {params} does not fit in {search.max_params:,} parameters")
    return config


def confirm(
    summary: dict[str, Any], search: Search, seeds: list[int], output_dir: Path, jobs: int
) -> dict[str, Any]:
    """Train the study's best net and the improved net (the study's first point) with each of
    seeds, search.epochs each, on the validation split, through a sweep (runs/…/confirm: run it
    again and the finished runs are kept; run_rows prints each run as it ends); write them to
    output_dir/confirm.json and return them, with each net's mean and least final accuracy."""
    from .sweep import Engine, run_rows

    if not summary["best"]:
        raise MnistCnnError("the study has no complete trial to confirm yet")
    best = summary["best"][0]
    rows = {
        "improved": point_config(KNOWN_POINTS["improved"], search),
        f"trial {best['number']}": point_config(best["params"], search),
    }
    results = run_rows(rows, seeds, Engine(output_dir / "confirm", jobs), search.threads)
    for result in results.values():
        final = [accuracy[-1] for accuracy in result["accuracy"]]
        result["final_mean"], result["final_min"] = sum(final) / len(final), min(final)
    write_atomic(output_dir / "confirm.json", json.dumps(results, indent=2).encode())
    return results


def frontier_figure(summary: dict[str, Any]) -> Figure:
    """Validation accuracy against parameters: each trial that trained at least one epoch, at its
    last epoch (a pruned one where it stopped)."""
    from .plots import new_figure

    figure = new_figure(figsize=(6.4, 4.2), layout="constrained")
    axes = figure.add_subplot()
    for state, marker, label in (("complete", "o", "complete"), ("pruned", "x", "pruned (where it stopped)")):
        points = [r for r in summary["trained"] if r["state"] == state]
        axes.scatter(
            [r["parameters"] for r in points],
            [100 * r["last_val_accuracy"] for r in points],
            marker=marker,
            label=label,
            alpha=0.8,
        )
    axes.axvline(summary["search"].get("max_params", BUDGET), color="grey", linestyle=":", label="budget")
    axes.set_xlabel("parameters")
    axes.set_ylabel("validation accuracy (%)")
    # The nets that learnt: the axis spans two points below the best; the others are counted.
    scores = [100 * r["last_val_accuracy"] for r in summary["trained"]]
    title = f"study {summary['study']}"
    if scores:
        floor = max(scores) - 2
        axes.set_ylim(floor, max(scores) + 0.1)
        below = sum(score < floor for score in scores)
        title += f" ({below} below {floor:.2f}%, not shown)" if below else ""
    axes.set_title(title)
    axes.legend(loc="lower right")
    return figure
