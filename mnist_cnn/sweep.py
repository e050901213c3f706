"""Many training runs, for each seed of a recipe or each row of a table of recipes, submitted
through submitit: on this machine (its local executor, --jobs at a time) or on a Slurm cluster,
with the same code.

Each finished run is appended to a JSON Lines file as soon as it ends, keyed by its config, the
CPU and the torch version; running the sweep again skips the runs already there, so an
interrupted sweep loses nothing. Each parallel run gets a fixed share of the cores (--threads,
else the usable cores divided among the jobs), so its result is bitwise the one it gives alone
with that thread count: a sweep with --jobs 2 --threads 1 matches one with --jobs 1 --threads 1
run by run. scripts/accuracy.py and scripts/ablation.py are built on it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .device import usable_cores
from .errors import MnistCnnError, TrainingInterrupted, first_line
from .machine import cpu_model
from .metrics import evaluated_split
from .model import build_model, count_parameters
from .runs import stop_signals
from .train import fit, parse_args

CLUSTERS = ("local", "slurm")
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # a week: a run on this machine is never cut short by submitit


def job_threads(jobs: int, threads: int | None) -> int | None:
    """The thread count of each of jobs parallel runs: threads, else a fair share of the cores
    (None, one run at a time: the package's own choice)."""
    if threads is not None or jobs == 1:
        return threads
    return max(1, usable_cores() // jobs)


@dataclass(frozen=True)
class Engine:
    """Where a sweep's runs go: submitit's executor for cluster ("local": processes on this
    machine, at most jobs at a time; "slurm": jobs on a Slurm cluster, slurm giving its
    parameters, such as {"partition": "gpu"}), folder for its logs, results for the finished runs."""

    folder: Path
    jobs: int = 1
    cluster: str = "local"
    slurm: dict[str, str] = field(default_factory=dict)

    @property
    def results(self) -> Path:
        return self.folder / "results.jsonl"


def run_key(config: TrainConfig) -> str:
    """What makes two runs the same run, bit for bit: the config, the kind of CPU and torch."""
    what = {"config": config.to_dict(), "cpu": cpu_model(), "torch": torch.__version__}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


class Results:
    """The finished runs of a sweep, a JSON Lines file: one line a run, appended as it ends."""

    def __init__(self, path: Path) -> None:
        self.path, self.histories = path, {}
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                record = json.loads(line)
                self.histories[record["key"]] = record["history"]
            except (ValueError, KeyError, TypeError):  # a line cut short when a sweep was killed
                continue

    def get(self, config: TrainConfig) -> list[dict] | None:
        return self.histories.get(run_key(config))

    def add(self, config: TrainConfig, history: list[dict]) -> None:
        """Append the run, whole, before the sweep goes on (a crash loses at most a cut line)."""
        key = run_key(config)
        record = {"key": key, "config": config.to_dict(), "history": history, "cpu": cpu_model()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as file:
            file.write(json.dumps(record) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self.histories[key] = history


def executor(engine: Engine) -> Any:
    """submitit's executor for the engine; submitit is imported only for a sweep."""
    try:
        import submitit
    except ImportError:
        raise MnistCnnError('sweeps run through submitit: pip install "mnist-cnn[sweep]"') from None
    folder = engine.folder / "jobs" / "%j"
    if engine.cluster == "local":
        local = submitit.LocalExecutor(folder=folder)
        # submitit's local jobs time out after 2 minutes unless told otherwise: a run takes hours.
        local.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
        return local
    slurm = submitit.AutoExecutor(folder=folder, cluster="slurm")
    slurm.update_parameters(**{f"slurm_{key}": value for key, value in engine.slurm.items()})
    return slurm


def stop_job(job: Any, engine: Engine) -> None:
    """Stop a run under way. A local job's id is its submitit controller's pid: SIGTERM, which
    the controller passes on to the run (training stops at its next check), where submitit's own
    cancel (SIGINT) would make the controller print a traceback. A cluster's, as the cluster does."""
    if engine.cluster != "local":
        job.cancel(check=False)
        return
    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
        os.kill(int(job.job_id), signal.SIGTERM)


def train_all(configs: list[TrainConfig], engine: Engine) -> Iterator[list[dict]]:
    """Each config's history, in order, as soon as it and those before it are done. Runs already
    in engine.results are not trained again; each new one is added to it when it ends."""
    results = Results(engine.results)
    todo = [i for i, config in enumerate(configs) if results.get(config) is None]
    print(
        f"{len(todo)} of {len(configs)} runs to train ({len(configs) - len(todo)} already in {engine.results})",
        file=sys.stderr,
        flush=True,
    )
    submit = executor(engine)
    running: dict[int, Any] = {}  # a config's index -> its submitit job
    limit = engine.jobs if engine.cluster == "local" else len(todo)
    done = 0
    # The runs under way stop with the sweep, however it stops: only this process writes their
    # results down, so a run left going would train for nothing (and take a core from the next).
    with stop_signals() as stop:
        try:
            while done < len(configs):
                if signal_number := stop():  # Ctrl-C, or SIGTERM from a scheduler or kill
                    raise TrainingInterrupted(
                        "the runs under way are stopped; the same command trains those not finished",
                        signal_number,
                    )
                while todo and len(running) < limit:
                    i = todo.pop(0)
                    running[i] = submit.submit(fit, configs[i])
                for i, job in list(running.items()):
                    if job.done():
                        del running[i]
                        try:
                            results.add(configs[i], job.result())
                        except Exception as error:  # submitit's error carries the run's own traceback
                            raise MnistCnnError(
                                f"run {i + 1} of the sweep failed ({first_line(error)}); its log: {job.paths.stderr}"
                            ) from None
                while done < len(configs) and (history := results.get(configs[done])) is not None:
                    yield history
                    done += 1
                if done < len(configs):
                    time.sleep(0.2)
        finally:
            for job in running.values():
                stop_job(job, engine)


def with_threads(configs: list[TrainConfig], jobs: int, threads: int | None) -> list[TrainConfig]:
    """configs with each run's thread count for jobs parallel runs (see job_threads)."""
    count = job_threads(jobs, threads)
    return [dataclasses.replace(c, threads=count) for c in configs]


def add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    """--jobs, --threads, --sweep-dir, --cluster and --slurm, as the sweeps take them."""
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time on this machine, in processes that share the cores",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads of each run (default: auto alone, the cores / --jobs in parallel)",
    )
    parser.add_argument(
        "--sweep-dir",
        type=Path,
        metavar="DIR",
        help="the runs' logs and results.jsonl, the runs already finished (default: runs/sweeps/<script>)",
    )
    parser.add_argument(
        "--cluster", choices=CLUSTERS, default="local", help="where the runs go: this machine, or Slurm"
    )
    parser.add_argument(
        "--slurm",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="with --cluster slurm: submitit's slurm_KEY parameters, e.g. partition=cpu time=60 cpus_per_task=2",
    )


def engine_from_args(args: argparse.Namespace, name: str) -> Engine:
    """The Engine that add_sweep_flags' flags ask for; name: the sweep's default folder's."""
    slurm = dict(pair.split("=", 1) for pair in args.slurm if "=" in pair)
    if len(slurm) != len(args.slurm):
        raise MnistCnnError(f"--slurm takes KEY=VALUE pairs, got {' '.join(args.slurm)}")
    folder = args.sweep_dir or Path("runs") / "sweeps" / name
    return Engine(folder, max(1, args.jobs), args.cluster, slurm)


def sweep_caption(args: argparse.Namespace) -> str:
    """How the runs were spread: '--jobs 2, 1 thread each'."""
    threads = job_threads(args.jobs, args.threads)
    where = f"--jobs {args.jobs}" if args.cluster == "local" else "on Slurm"
    return f"{where}, " + ("auto threads" if threads is None else f"{threads} thread(s) each")


def run_rows(
    rows: dict[str, TrainConfig], seeds: list[int], engine: Engine, threads: int | None = None
) -> dict:
    """Train each row's config once per seed, through engine; per row: the accuracies per seed
    and epoch, and the median training seconds per epoch."""
    runs = [(name, seed) for name in rows for seed in seeds]
    configs = with_threads([replace(rows[name], seed=seed) for name, seed in runs], engine.jobs, threads)
    results: dict[str, dict[str, list]] = {name: {"accuracy": [], "seconds": []} for name in rows}
    for (name, seed), history in zip(runs, train_all(configs, engine), strict=True):
        accuracy = [m[f"{evaluated_split(m)}_accuracy"] for m in history]  # test, or validation
        results[name]["accuracy"].append(accuracy)
        results[name]["seconds"] += [m["train_seconds"] for m in history]
        print(
            f"  {name + ', ' if name else ''}seed {seed}: " + " ".join(f"{100 * a:.2f}" for a in accuracy),
            flush=True,
        )
    return {
        name: {
            "parameters": count_parameters(build_model(rows[name].model, **rows[name].model_args)),
            "seeds": seeds,
            "accuracy": result["accuracy"],  # [seed][epoch]
            "seconds_per_epoch": statistics.median(result["seconds"]),
            "threads": configs[0].threads,
        }
        for name, result in results.items()
    }


def run_seeds(config: TrainConfig, seeds: list[int], engine: Engine, threads: int | None = None) -> dict:
    """run_rows for one config."""
    return run_rows({"": config}, seeds, engine, threads)[""]


def recipe_config(flags: list[str]) -> TrainConfig:
    """The run that mnist_cnn.train's flags ask for (the model's recipe with them on top), on the
    CPU unless --device says otherwise, writing no files."""
    command = parse_args(["--device", "cpu", *flags])  # a later --device wins
    if command.resume is not None:
        raise MnistCnnError("--resume continues one run: not for a sweep")
    return replace(command.config, output_dir=None, save_model=False)


def recipe_changes(config: TrainConfig) -> dict:
    """What config changes in its model's recipe, bar the data, the split it is measured on and
    what runs it."""
    recipe = TrainConfig(model=config.model, dataset=config.dataset).to_dict()
    ignored = {"data_dir", "val_split", "device", "output_dir", "seed", "threads", "save_model"}
    return {k: v for k, v in config.to_dict().items() if k not in ignored and v != recipe[k]}
