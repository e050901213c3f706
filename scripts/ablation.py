"""The seed's "Possible Improvements", then the recipe's, added one at a time, under the same seeds.

    python scripts/ablation.py --data-dir ../shared/data --seeds 1 2 3 --json ablation.json
    python scripts/ablation.py --data-dir ../shared/data --seeds 1 2 3 --rows 6 7 --jobs 2

Each row is the row above plus one change. Every row trains its epochs with each seed twice: on
the training split less a validation split of --val-split images, reporting the validation
accuracy (what the choices were made by), and on all of the training split, reporting the test
accuracy. The table gives parameters, epochs, the final epoch's validation and test accuracy
(mean and min over seeds), and training seconds per epoch (median of the test runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

from mnist_cnn import TrainConfig, build_model, count_parameters
from mnist_cnn.cli import exit_on_error
from mnist_cnn.config import IMPROVED_V1, recipe
from mnist_cnn.machine import caption, describe_machine
from mnist_cnn.sweep import add_sweep_flags, engine_from_args, run_rows, sweep_caption

SEED_RECIPE_ROWS: list[tuple[str, dict]] = [
    ("seed Net (seed recipe: one-cycle, lr 0.03)", {}),
    (
        "+ BatchNorm (last 3x3 conv 30 wide)",
        {"model": "improved", "model_args": {"dropout": 0.0, "padding": False}},
    ),
    ("+ Dropout 0.05", {"model": "improved", "model_args": {"padding": False}}),
    ("+ padding=1 (first two convs)", {"model": "improved"}),
    ("+ augmentation", {"model": "improved", "augment": True}),
]
# (row name, changes from TrainConfig's defaults: the seed net and its recipe)
STEPS: list[tuple[str, dict]] = [
    *((name, {"epochs": 15, **changes}) for name, changes in SEED_RECIPE_ROWS),
    (
        "+ recipe: restarts schedule, lr 0.1, weight decay 0.0002 (15 epochs: ImprovedNetWeights.MNIST_V1's)",
        {"model": "improved", **IMPROVED_V1},
    ),
    (
        "+ 40 epochs (restart cycles of 1, 2, 4, 8 and 25 epochs; = --model improved)",
        TrainConfig(model="improved").to_dict(),
    ),
]


def final_cells(row: dict | None) -> str:
    """A row's final accuracy as 'mean / min' over seeds ('-' when not run)."""
    if row is None:
        return "-"
    final = [a[-1] for a in row["accuracy"]]
    return f"{100 * statistics.mean(final):.2f}% / {100 * min(final):.2f}%"


@exit_on_error  # a failed or stopped run is one line, as the commands say it
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="folder holding MNIST/raw/ (default: $MNIST_DATA_DIR, else ./data)")
    p.add_argument("--epochs", type=int, help="train every row this many epochs (default: each row's own)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--rows", type=int, nargs="+", help="only these rows (1 is the first; default: all)")
    p.add_argument(
        "--val-split", type=int, default=5000, help="validation images held out (0: no validation runs)"
    )
    p.add_argument(
        "--no-test", action="store_true", help="no runs on the whole training split (no test column)"
    )
    p.add_argument("--device", default="cpu")
    add_sweep_flags(p)
    p.add_argument("--json", metavar="PATH", help="also write every accuracy as JSON")
    args = p.parse_args(argv)

    if args.rows and not all(1 <= i <= len(STEPS) for i in args.rows):
        p.error(f"--rows: the rows are 1 to {len(STEPS)}")
    chosen = [STEPS[i - 1] for i in args.rows] if args.rows else STEPS
    epochs = {"epochs": args.epochs} if args.epochs else {}
    base = {"data_dir": args.data_dir, "device": args.device}
    # Every row trains by the seed net's recipe but for what it changes.
    configs = {
        name: TrainConfig(**{**recipe("seed"), **changes, **epochs, **base}) for name, changes in chosen
    }
    runs = {}  # the rows' configs, by "<split>: <name>"
    for name, config in configs.items():
        if args.val_split:
            runs[f"val: {name}"] = replace(config, val_split=args.val_split)
        if not args.no_test:
            runs[f"test: {name}"] = config
    start = time.perf_counter()
    results = run_rows(runs, args.seeds, engine_from_args(args, "ablation"), args.threads)
    wall = time.perf_counter() - start

    machine = describe_machine(args.device)
    print(
        f"\nseeds {' '.join(map(str, args.seeds))}, validation split {args.val_split}, "
        f"{sweep_caption(args)}, {wall:.0f} s in all; {caption(machine)}\n"
    )
    print(
        "| step | parameters | epochs | validation, final (mean / min) | test, final (mean / min) | train s/epoch |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, config in configs.items():
        timed = results.get(f"test: {name}") or results[f"val: {name}"]
        print(
            f"| {name} | {count_parameters(build_model(config.model, **config.model_args)):,} | {config.epochs} "
            f"| {final_cells(results.get(f'val: {name}'))} | {final_cells(results.get(f'test: {name}'))} "
            f"| {timed['seconds_per_epoch']:.1f} |"
        )
    if args.json:
        rows = {run: {**result, "config": runs[run].to_dict()} for run, result in results.items()}
        with open(args.json, "w") as file:
            json.dump({"machine": machine, "wall_seconds": wall, "rows": rows}, file, indent=2)


if __name__ == "__main__":
    main()
