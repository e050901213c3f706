"""Training speed side by side on the real MNIST: the classic DataLoader pipeline against this
package's default path and each of its speed options.

    python scripts/benchmark.py --data-dir ../shared/data --repeats 3 --json bench.json

Every contender trains the same Net for one epoch with the same optimizer, schedule and seed; the
contenders take turns within each repetition, so a slow spell of the machine hits them all. For
each: median and spread (min-max) of training seconds per epoch, training images per second, test
accuracy after the epoch, inference images per second on the test set, and speed-up against the
classic pipeline (the classic run's seconds over the contender's, in the same repetition). Then,
for the default path and the classic one, the wall time from process start until the test
accuracy first reaches 98.0% (`python -m mnist_cnn.train` and `scripts/classic.py` in
subprocesses). The JSON holds every measurement and the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from classic import fit_classic
from machine import caption, describe_machine

from mnist_cnn import TrainConfig, fit
from mnist_cnn.device import select_device

SCRIPTS = Path(__file__).resolve().parent
TARGET = 0.98

# name -> (description, changes to the default TrainConfig). "classic" is the baseline.
CONTENDERS: dict[str, tuple[str, dict]] = {
    "classic": ("torchvision transforms + DataLoader(shuffle, 1 worker), NCHW fp32", {}),
    "default": ("mnist_cnn defaults: in-memory tensors, channels_last, fp32", {}),
    "nchw": ("in-memory tensors, --no-channels-last", {"channels_last": False}),
    "bf16": ("defaults + --precision bf16", {"precision": "bf16"}),
    "batch128": ("defaults + --batch-size 128 --lr 0.05", {"batch_size": 128, "lr": 0.05}),
    "threads1": ("defaults + --threads 1", {"threads": 1}),
}


def run_contender(name: str, config: TrainConfig) -> dict:
    """One epoch of one contender: its metrics."""
    train: Callable[[TrainConfig], list[dict]] = fit_classic if name == "classic" else fit
    changes = CONTENDERS[name][1]
    return train(dataclasses.replace(config, **changes))[0]


def seconds_to_accuracy(command: list[str], target: float = TARGET) -> float | None:
    """Wall seconds from starting command until it prints a test line at or above target."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    reached = None
    for line in process.stdout:
        match = re.search(r"Test set: .*\((\d+\.\d+)%\)", line)
        if match and float(match.group(1)) / 100 >= target:
            reached = time.perf_counter() - start
            break
    process.kill()
    process.wait()
    return reached


def summarize(runs: list[dict], classic: list[dict]) -> dict:
    """Statistics of one contender's runs. Its speed-up is taken repetition by repetition against
    the classic run of the same repetition, so a slow spell of the machine, which hits both,
    cancels out; the median and range of those ratios are reported."""
    seconds = [r["train_seconds"] for r in runs]
    median = statistics.median(seconds)
    speedups = [c["train_seconds"] / s for c, s in zip(classic, seconds, strict=True)]
    return {
        "train_seconds": seconds,
        "median_seconds": median,
        "min_seconds": min(seconds),
        "max_seconds": max(seconds),
        "train_images_per_second": 60_000 / median,
        "test_accuracy": [r["test_accuracy"] for r in runs],
        "inference_images_per_second": statistics.median(r["test_total"] / r["test_seconds"] for r in runs),
        "speedups": speedups,
        "speedup": statistics.median(speedups),
    }


def markdown(results: dict, to_accuracy: dict, machine: dict, repeats: int) -> str:
    lines = [
        f"One training epoch of the seed's Net, batch 64 unless named, seed 1, median of {repeats} runs; "
        f"{caption(machine)}.",
        "",
        "| contender | what | train s/epoch (median, min-max) | train images/s | test accuracy | inference images/s | speed-up (median, min-max) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        accuracy = ", ".join(f"{100 * a:.2f}" for a in sorted(set(r["test_accuracy"])))
        lines.append(
            f"| {name} | {CONTENDERS[name][0]} | {r['median_seconds']:.2f} "
            f"({r['min_seconds']:.2f}-{r['max_seconds']:.2f}) | {r['train_images_per_second']:,.0f} "
            f"| {accuracy}% | {r['inference_images_per_second']:,.0f} | {r['speedup']:.2f}x "
            f"({min(r['speedups']):.2f}-{max(r['speedups']):.2f}) |"
        )
    lines += ["", f"Wall time from process start to {100 * TARGET:.1f}% test accuracy (one run each):", ""]
    lines += ["| pipeline | seconds |", "|---|---:|"]
    for name, seconds in to_accuracy.items():
        lines.append(f"| {name} | {'not reached' if seconds is None else f'{seconds:.1f}'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="folder holding MNIST/raw/ (default: $MNIST_DATA_DIR, else ./data)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    p.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    args = p.parse_args()
    if "classic" not in args.contenders:
        args.contenders.insert(0, "classic")

    config = TrainConfig(data_dir=args.data_dir, device=args.device, seed=1, epochs=1)
    runs: dict[str, list[dict]] = {name: [] for name in args.contenders}
    for repeat in range(1, args.repeats + 1):
        for name in args.contenders:
            metrics = run_contender(name, config)
            runs[name].append(metrics)
            print(
                f"repeat {repeat} {name}: {metrics['train_seconds']:.2f} s, "
                f"{100 * metrics['test_accuracy']:.2f}%",
                file=sys.stderr,
                flush=True,
            )
    results = {name: summarize(runs[name], runs["classic"]) for name in args.contenders}

    data = ["--data-dir", args.data_dir] if args.data_dir else []
    to_accuracy = {
        "mnist_cnn (`python -m mnist_cnn.train`)": seconds_to_accuracy(
            [sys.executable, "-m", "mnist_cnn.train", "--device", args.device, "--no-progress", *data]
        ),
        "classic (`scripts/classic.py`)": seconds_to_accuracy(
            [sys.executable, str(SCRIPTS / "classic.py"), "--device", args.device, *data]
        ),
    }

    machine = describe_machine(str(select_device(args.device)))
    print(markdown(results, to_accuracy, machine, args.repeats))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {
                    "machine": machine,
                    "config": config.to_dict(),
                    "results": results,
                    "seconds_to_98": to_accuracy,
                },
                file,
                indent=2,
            )


if __name__ == "__main__":
    main()
