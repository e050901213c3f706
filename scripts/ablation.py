"""The seed's "Possible Improvements", added one at a time, under one budget and the same seeds.

    python scripts/ablation.py --data-dir ../shared/data --epochs 15 --seeds 1 2 3 --json ablation.json
    python scripts/ablation.py --data-dir ../shared/data --epochs 15 --seeds 1 2 3 --jobs 2   # in parallel

Each row is the row above plus one change; every row trains for --epochs with each seed. The
table gives parameters, test accuracy after epoch 1 (mean over seeds), the final accuracy (mean
and min), the best epoch's accuracy (mean), and training seconds per epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

from machine import caption, describe_machine
from sweep import add_sweep_flags, sweep_caption, train_all, with_threads

from mnist_cnn import TrainConfig, build_model, count_parameters
from mnist_cnn.config import default_config

# (row name, changes from TrainConfig's defaults: the seed net and its recipe)
STEPS: list[tuple[str, dict]] = [
    ("seed Net (seed recipe: one-cycle, lr 0.03)", {}),
    (
        "+ BatchNorm (last 3x3 conv 30 wide)",
        {"model": "improved", "model_args": {"dropout": 0.0, "padding": False}},
    ),
    ("+ Dropout 0.05", {"model": "improved", "model_args": {"padding": False}}),
    ("+ padding=1 (first two convs)", {"model": "improved"}),
    ("+ augmentation", {"model": "improved", "augment": True}),
    (
        "+ recipe: {schedule} schedule, lr {lr}, weight decay {weight_decay} (= --model improved)".format(
            **default_config("improved").to_dict()
        ),
        default_config("improved").to_dict(),
    ),
]


def run_rows(
    rows: dict[str, TrainConfig], seeds: list[int], jobs: int = 1, threads: int | None = None
) -> dict:
    """Train each row's config once per seed (--jobs at a time); per row: the accuracies per seed
    and epoch, and the median training seconds per epoch."""
    runs = [(name, seed) for name in rows for seed in seeds]
    configs = with_threads([replace(rows[name], seed=seed) for name, seed in runs], jobs, threads)
    results = {name: {"accuracy": [], "seconds": []} for name in rows}
    for (name, seed), history in zip(runs, train_all(configs, jobs), strict=True):
        results[name]["accuracy"].append([m["test_accuracy"] for m in history])
        results[name]["seconds"] += [m["train_seconds"] for m in history]
        print(
            f"  {name + ', ' if name else ''}seed {seed}: "
            + " ".join(f"{100 * m['test_accuracy']:.2f}" for m in history),
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


def summary_cells(row: dict) -> list[str]:
    first = [a[0] for a in row["accuracy"]]
    final = [a[-1] for a in row["accuracy"]]
    best = [max(a) for a in row["accuracy"]]
    return [
        f"{row['parameters']:,}",
        f"{100 * statistics.mean(first):.2f}%",
        f"{100 * statistics.mean(final):.2f}% / {100 * min(final):.2f}%",
        f"{100 * statistics.mean(best):.2f}%",
        f"{row['seconds_per_epoch']:.1f}",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="folder holding MNIST/raw/ (default: $MNIST_DATA_DIR, else ./data)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--device", default="cpu")
    add_sweep_flags(p)
    p.add_argument("--json", metavar="PATH", help="also write every accuracy as JSON")
    args = p.parse_args()

    configs = {
        name: TrainConfig.from_dict(
            {**changes, "epochs": args.epochs, "data_dir": args.data_dir, "device": args.device}
        )
        for name, changes in STEPS
    }
    start = time.perf_counter()
    results = run_rows(configs, args.seeds, args.jobs, args.threads)
    rows = {name: {**results[name], "config": configs[name].to_dict()} for name in configs}
    wall = time.perf_counter() - start

    machine = describe_machine(args.device)
    print(
        f"\n{args.epochs} epochs, seeds {' '.join(map(str, args.seeds))}, {sweep_caption(args)}, "
        f"{wall:.0f} s in all; {caption(machine)}\n"
    )
    print("| step | parameters | epoch 1 (mean) | final (mean / min) | best epoch (mean) | train s/epoch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(summary_cells(row)) + " |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {"machine": machine, "epochs": args.epochs, "wall_seconds": wall, "rows": rows},
                file,
                indent=2,
            )


if __name__ == "__main__":
    main()
