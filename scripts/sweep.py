"""Train several runs, one after another or --jobs at a time in processes that share the cores.

Each parallel run gets a fixed share of the cores (--threads, else the usable cores divided among
the jobs), so its result is bitwise the one it gives alone with that thread count: a sweep with
--jobs 2 --threads 1 matches one with --jobs 1 --threads 1 run by run.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

from mnist_cnn import TrainConfig, fit
from mnist_cnn.device import usable_cores


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
