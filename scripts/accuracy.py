"""Train a model's default recipe once per seed on the real MNIST (or --dataset); print a markdown table.

    python scripts/accuracy.py --data-dir ../shared/data --seeds 1 2 3 4 5
    python scripts/accuracy.py --data-dir ../shared/data --seeds 1 2 3 4 5 --jobs 2   # 2 at a time
    python scripts/accuracy.py --data-dir ../shared/data --model improved --seeds 1 2 3
    python scripts/accuracy.py --data-dir data --dataset fashion-mnist --model improved --seeds 1 2 3
    python scripts/accuracy.py --data-dir ../shared/data --precision bf16    # a speed option

Each row is one `fit(default_config(model, seed=S))`: test accuracy after epoch 1, after the last
epoch (the one that counts), and at the best epoch; training seconds per epoch (data loading and
evaluation not counted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from ablation import run_seeds
from machine import caption, describe_machine
from sweep import add_sweep_flags, sweep_caption

from mnist_cnn.config import PRECISIONS, RECIPES, default_config, flag
from mnist_cnn.data import DATASETS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="folder holding MNIST/raw/ (default: $MNIST_DATA_DIR, else ./data)")
    p.add_argument("--model", default="seed", choices=sorted(RECIPES))
    p.add_argument("--dataset", default="mnist", choices=list(DATASETS))
    p.add_argument("--epochs", type=int, help="instead of the recipe's")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, help="instead of the recipe's")
    p.add_argument("--batch-size", type=int, help="instead of the recipe's")
    p.add_argument("--lr", type=float, help="instead of the recipe's")
    p.add_argument("--precision", choices=PRECISIONS, help="instead of the recipe's (fp32)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--device", default="cpu")
    add_sweep_flags(p)
    p.add_argument("--json", metavar="PATH", help="also write every accuracy as JSON")
    args = p.parse_args()

    overridable = ("epochs", "augment", "batch_size", "lr", "precision")
    changes = {k: getattr(args, k) for k in overridable if getattr(args, k) is not None}
    config = default_config(
        args.model, data_dir=args.data_dir, device=args.device, dataset=args.dataset, **changes
    )
    start = time.perf_counter()
    result = run_seeds(config, args.seeds, args.jobs, args.threads)
    wall = time.perf_counter() - start

    machine = describe_machine(args.device)
    changed = "".join(f", {flag(k)} {v}" for k, v in changes.items())
    print(
        f"\n`--model {args.model}` defaults{changed} on {args.dataset}, {config.epochs} epoch(s), "
        f"{sweep_caption(args)}, {wall:.0f} s in all; {caption(machine)}\n"
    )
    finals = [a[-1] for a in result["accuracy"]]
    seconds = f"{result['seconds_per_epoch']:.1f}"
    if config.epochs == 1:
        print("| seed | test accuracy | train s/epoch |\n|---:|---:|---:|")
        for seed, accuracy in zip(args.seeds, finals, strict=True):
            print(f"| {seed} | {100 * accuracy:.2f}% | {seconds} |")
    else:
        print(f"| seed | epoch 1 | final (epoch {config.epochs}) | best epoch | train s/epoch |")
        print("|---:|---:|---:|---:|---:|")
        for seed, accuracy in zip(args.seeds, result["accuracy"], strict=True):
            best = max(range(len(accuracy)), key=accuracy.__getitem__)
            print(
                f"| {seed} | {100 * accuracy[0]:.2f}% | {100 * accuracy[-1]:.2f}% "
                f"| {100 * accuracy[best]:.2f}% (epoch {best + 1}) | {seconds} |"
            )
    mean = f"{100 * statistics.mean(finals):.2f}% (min {100 * min(finals):.2f}%)"
    print(f"| mean | {mean} | |" if config.epochs == 1 else f"| mean | | {mean} | | |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {"machine": machine, "config": config.to_dict(), "wall_seconds": wall, **result},
                file,
                indent=2,
            )


if __name__ == "__main__":
    main()
