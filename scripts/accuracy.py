"""Train a model's recipe once per seed on the real MNIST (or --dataset); print a markdown table.

    python scripts/accuracy.py --data-dir ../shared/data --seeds 1 2 3 4 5
    python scripts/accuracy.py --data-dir ../shared/data --seeds 1 2 3 4 5 --jobs 2   # 2 at a time
    python scripts/accuracy.py --data-dir ../shared/data --model improved --seeds 1 2 3
    python scripts/accuracy.py --data-dir data --dataset fashion-mnist --model improved --seeds 1 2 3
    python scripts/accuracy.py --data-dir ../shared/data --precision bf16    # a speed option
    python scripts/accuracy.py --data-dir ../shared/data --model improved --val-split 5000 --seeds 1 2 3 --batch-size 32 --lr 0.05

Any flag of `python -m mnist_cnn.train` changes the recipe, for every seed. Each row is one
`fit(config)` with its seed: test accuracy (validation accuracy, with --val-split) after epoch 1,
after the last epoch (the one that counts), and at the best epoch; training seconds per epoch
(data loading and evaluation not counted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from mnist_cnn.cli import exit_on_error
from mnist_cnn.config import flag
from mnist_cnn.errors import MnistCnnError
from mnist_cnn.machine import caption, describe_machine
from mnist_cnn.sweep import (
    add_sweep_flags,
    engine_from_args,
    recipe_changes,
    recipe_config,
    run_seeds,
    sweep_caption,
)


@exit_on_error  # a failed or stopped run is one line, as the commands say it
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Every other flag is mnist_cnn.train's (--model, --dataset, --data-dir, --epochs, "
        "--batch-size, --lr, --val-split, ...): it changes the model's recipe for every seed.",
        allow_abbrev=False,  # --seed is train's flag, not short for --seeds
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    add_sweep_flags(p)
    p.add_argument("--json", metavar="PATH", help="also write every accuracy as JSON")
    args, train_flags = p.parse_known_args(argv)
    try:
        config = recipe_config(train_flags)
    except MnistCnnError as error:
        p.error(str(error))
    changes = recipe_changes(config)
    start = time.perf_counter()
    result = run_seeds(config, args.seeds, engine_from_args(args, "accuracy"), args.threads)
    wall = time.perf_counter() - start

    machine = describe_machine(config.device)
    changed = "".join(f", {flag(k)} {v}" for k, v in changes.items())
    split = f"validation split ({config.val_split} held out)" if config.val_split else "test set"
    print(
        f"\n`--model {config.model}` defaults{changed} on {config.dataset}'s {split}, {config.epochs} epoch(s), "
        f"{sweep_caption(args)}, {wall:.0f} s in all; {caption(machine)}\n"
    )
    finals = [a[-1] for a in result["accuracy"]]
    seconds = f"{result['seconds_per_epoch']:.1f}"
    if config.epochs == 1:
        print(
            f"| seed | {'validation' if config.val_split else 'test'} accuracy | train s/epoch |\n|---:|---:|---:|"
        )
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
