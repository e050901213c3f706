"""Many training runs: one after another, or --jobs at a time in processes that share the cores;
for each seed of a recipe, or each row of a table of recipes.

Each parallel run gets a fixed share of the cores (--threads, else the usable cores divided among
the jobs), so its result is bitwise the one it gives alone with that thread count: a sweep with
--jobs 2 --threads 1 matches one with --jobs 1 --threads 1 run by run. scripts/accuracy.py and
scripts/ablation.py are built on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import statistics
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from .config import TrainConfig
from .device import usable_cores
from .errors import MnistCnnError
from .metrics import evaluated_split
from .model import build_model, count_parameters
from .train import fit, parse_args


def job_threads(jobs: int, threads: int | None) -> int | None:
    """The thread count of each of jobs parallel runs: threads, else a fair share of the cores
    (None, one run at a time: the package's own choice)."""
    if threads is not None or jobs == 1:
        return threads
    return max(1, usable_cores() // jobs)


def train_all(configs: list[TrainConfig], jobs: int = 1) -> Iterator[list[dict]]:
    """Each config's history, in order, as soon as it and those before it are done."""
    if jobs == 1:
        yield from map(fit, configs)
        return
    # spawn: a fresh interpreter per worker, with none of this process's torch threads.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(fit, configs)


def with_threads(configs: list[TrainConfig], jobs: int, threads: int | None) -> list[TrainConfig]:
    """configs with each run's thread count for jobs parallel runs (see job_threads)."""
    count = job_threads(jobs, threads)
    return [dataclasses.replace(c, threads=count) for c in configs]


def add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    """--jobs and --threads, as the sweeps take them."""
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at a time, in processes that share the cores"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads of each run (default: auto alone, the cores / --jobs in parallel)",
    )


def sweep_caption(args: argparse.Namespace) -> str:
    """How the runs were spread: '--jobs 2, 1 thread each'."""
    threads = job_threads(args.jobs, args.threads)
    return f"--jobs {args.jobs}, " + ("auto threads" if threads is None else f"{threads} thread(s) each")


def run_rows(
    rows: dict[str, TrainConfig], seeds: list[int], jobs: int = 1, threads: int | None = None
) -> dict:
    """Train each row's config once per seed (--jobs at a time); per row: the accuracies per seed
    and epoch, and the median training seconds per epoch."""
    runs = [(name, seed) for name in rows for seed in seeds]
    configs = with_threads([replace(rows[name], seed=seed) for name, seed in runs], jobs, threads)
    results: dict[str, dict[str, list]] = {name: {"accuracy": [], "seconds": []} for name in rows}
    for (name, seed), history in zip(runs, train_all(configs, jobs), strict=True):
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


def run_seeds(config: TrainConfig, seeds: list[int], jobs: int = 1, threads: int | None = None) -> dict:
    """run_rows for one config."""
    return run_rows({"": config}, seeds, jobs, threads)[""]


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
