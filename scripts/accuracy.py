"""Train the defaults once per seed on the real MNIST and print a markdown table of the results.

    python scripts/accuracy.py --data-dir ../shared/data --seeds 1 2 3 4 5

Each row is one `fit(TrainConfig(seed=S, ...))`: test accuracy after every epoch, and training
seconds per epoch (data loading and evaluation not counted).
"""

from __future__ import annotations

import argparse
import json
import statistics

from machine import caption, describe_machine

from mnist_cnn import TrainConfig, fit
from mnist_cnn.train import select_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--model", default="seed")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = p.parse_args()

    rows = []
    for seed in args.seeds:
        config = TrainConfig(
            model=args.model, epochs=args.epochs, seed=seed, device=args.device, data_dir=args.data_dir
        )
        history = fit(config)
        rows.append(
            {
                "seed": seed,
                "accuracy": [m["test_accuracy"] for m in history],
                "seconds_per_epoch": statistics.mean(m["train_seconds"] for m in history),
            }
        )
        print(f"seed {seed}: {100 * history[-1]['test_accuracy']:.2f}%", flush=True)

    machine = describe_machine(str(select_device(args.device)))
    print(f"\n{args.model} net, defaults, {args.epochs} epoch(s); {caption(machine)}\n")
    print("| seed | test accuracy after epoch 1 | final test accuracy | train seconds / epoch |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['seed']} | {100 * row['accuracy'][0]:.2f}% | {100 * row['accuracy'][-1]:.2f}% "
            f"| {row['seconds_per_epoch']:.1f} |"
        )
    finals = [row["accuracy"][-1] for row in rows]
    print(f"| mean | | {100 * statistics.mean(finals):.2f}% (min {100 * min(finals):.2f}%) | |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"machine": machine, "model": args.model, "rows": rows}, file, indent=2)


if __name__ == "__main__":
    main()
