"""Speed side by side on the real MNIST: the classic DataLoader pipeline against this package's
default path and each of its speed options, then what a user waits for as whole processes.

    python scripts/benchmark.py --data-dir ../shared/data --repeats 5 --json bench.json

Training: every contender trains the same Net for one epoch with the same optimizer, schedule and
seed; the contenders take turns within each repetition, so a slow spell of the machine hits them
all. For each: median and spread (min-max) of training seconds per epoch, training images per
second, test accuracy after the epoch, inference images per second on the test set, and speed-up
against the classic pipeline (the classic run's seconds over the contender's, in the same
repetition).

Whole processes (--process-repeats times, each time in turn, after one warm-up run that fills
the data cache):
- to 98%: wall seconds from starting `python -m mnist_cnn.train` and `scripts/classic.py` until
  each prints a test line at or above 98.0%, and their ratio;
- the rest of a 1-epoch run: `python -m mnist_cnn.train --epochs 1 --save-model` to its end,
  minus the training seconds it reports (metrics.json), as a fraction of those seconds;
- predict: `python -m mnist_cnn.predict` on one image against `python -c "import torch"`.
Ratios are taken run by run and their median and range reported.

A busy machine (--busy N): a default 1-epoch run, quiet and beside one competing training process
that this script starts (torch's own thread count, fixed; killed when the run ends), against the
same run with that count fixed (the default before auto threads), N times in turn. The JSON holds
every measurement and the machine.

    python scripts/benchmark.py --data-dir ../shared/data --repeats 0 --process-repeats 0 --busy 5 --busy-baseline
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mnist_cnn import TrainConfig, fit
from mnist_cnn.classic import fit_classic
from mnist_cnn.device import TORCH_DEFAULT_THREADS, select_device
from mnist_cnn.machine import caption, describe_machine

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


def seconds_to_accuracy(command: list[str], cwd: str, target: float = TARGET) -> float | None:
    """Wall seconds from starting command until it prints a test line at or above target."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd)
    reached = None
    for line in process.stdout:
        match = re.search(r"Test set: .*\((\d+\.\d+)%\)", line)
        if match and float(match.group(1)) / 100 >= target:
            reached = time.perf_counter() - start
            break
    process.kill()
    process.wait()
    return reached


def process_seconds(command: list[str], cwd: str) -> float:
    """Wall seconds of command, from start to exit."""
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=cwd)
    return time.perf_counter() - start


def whole_processes(data: list[str], device: str, repeats: int, image: Path) -> dict:
    """What a user waits for, as whole processes, measured in turn repeats times (see the module's
    docstring)."""
    python = sys.executable
    train = [python, "-m", "mnist_cnn.train", "--device", device, "--no-progress", *data]
    runs: dict[str, list] = {"ours_to_98": [], "classic_to_98": [], "epoch_wall": [], "epoch_train": []}
    runs |= {"predict": [], "import_torch": []}
    with tempfile.TemporaryDirectory() as work:
        process_seconds([*train, "--dry-run"], work)  # fills the data cache, as any earlier run has
        for repeat in range(repeats):
            runs["ours_to_98"].append(seconds_to_accuracy([*train, "--output-dir", f"to98-{repeat}"], work))
            classic = [python, str(SCRIPTS / "classic.py"), "--device", device, *data]
            runs["classic_to_98"].append(seconds_to_accuracy(classic, work))
            folder = Path(work) / f"epoch-{repeat}"
            epoch = [*train, "--epochs", "1", "--save-model", "--output-dir", str(folder)]
            runs["epoch_wall"].append(process_seconds(epoch, work))
            runs["epoch_train"].append(json.loads((folder / "metrics.json").read_text())[0]["train_seconds"])
            predict = [python, "-m", "mnist_cnn.predict", str(folder / "best.pt"), str(image)]
            runs["predict"].append(process_seconds(predict, work))
            runs["import_torch"].append(process_seconds([python, "-c", "import torch"], work))
            print(
                f"whole processes, repeat {repeat + 1}: "
                + ", ".join(f"{k} {v[-1]}" for k, v in runs.items()),
                file=sys.stderr,
                flush=True,
            )
    pairs = zip(runs["classic_to_98"], runs["ours_to_98"], strict=True)
    runs["to_98_speedups"] = [c / o for c, o in pairs if c is not None and o is not None]
    runs["rest_fractions"] = [
        (w - t) / t for w, t in zip(runs["epoch_wall"], runs["epoch_train"], strict=True)
    ]
    runs["predict_ratios"] = [p / t for p, t in zip(runs["predict"], runs["import_torch"], strict=True)]
    return runs


@contextlib.contextmanager
def competing_run(data: list[str], device: str, threads: int) -> Iterator[None]:
    """Another training process beside this one, with a fixed thread count, from the moment its
    training starts until the block ends (and at most --epochs 30 of it in any case)."""
    with tempfile.TemporaryDirectory() as work:
        command = [sys.executable, "-m", "mnist_cnn.train", "--threads", str(threads), "--epochs", "30"]
        command += ["--device", device, "--no-progress", "--output-dir", "competitor", *data]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=work
        )
        try:
            for line in process.stdout:  # its banner comes right before its first batch
                if line.startswith("Training "):
                    break
            yield
        finally:
            process.kill()
            process.wait()


def busy_machine(config: TrainConfig, data: list[str], repeats: int, baseline: bool) -> dict:
    """Training seconds of a default 1-epoch run (auto threads) and of one with torch's own thread
    count fixed (the default before auto), quiet and beside one competing training process with
    that many threads, in turn; the latter beside it only with baseline (it can take minutes)."""
    fixed = dataclasses.replace(config, threads=TORCH_DEFAULT_THREADS)
    runs: dict[str, list[float]] = {"quiet_auto": [], "quiet_fixed": [], "busy_auto": [], "busy_fixed": []}
    for repeat in range(repeats):
        runs["quiet_auto"].append(fit(config)[0]["train_seconds"])
        runs["quiet_fixed"].append(fit(fixed)[0]["train_seconds"])
        with competing_run(data, config.device, TORCH_DEFAULT_THREADS):
            runs["busy_auto"].append(fit(config)[0]["train_seconds"])
            if baseline:
                runs["busy_fixed"].append(fit(fixed)[0]["train_seconds"])
        print(
            f"busy machine, repeat {repeat + 1}: "
            + ", ".join(f"{k} {v[-1]:.2f}" for k, v in runs.items() if v),
            file=sys.stderr,
            flush=True,
        )
    quiet_auto, quiet_fixed = runs["quiet_auto"], runs["quiet_fixed"]
    runs["busy_over_quiet_auto"] = [b / q for b, q in zip(runs["busy_auto"], quiet_auto, strict=True)]
    runs["busy_over_quiet_fixed"] = [b / q for b, q in zip(runs["busy_fixed"], quiet_fixed, strict=False)]
    runs["quiet_auto_over_fixed"] = [a / f for a, f in zip(quiet_auto, quiet_fixed, strict=True)]
    return runs


def busy_markdown(runs: dict, threads: int) -> str:
    """The busy-machine measurements as a table."""
    n = len(runs["quiet_auto"])
    busy_fixed = median_range(runs["busy_fixed"], " s") if runs["busy_fixed"] else "not measured"
    return "\n".join(
        [
            f"A default 1-epoch run beside one competing training process ({threads} threads), "
            f"median (min-max) of {n} repetitions taken in turn:",
            "",
            "| threads | quiet | beside the other process | slower by |",
            "|---|---:|---:|---:|",
            f"| auto (the default) | {median_range(runs['quiet_auto'], ' s')} | {median_range(runs['busy_auto'], ' s')} "
            f"| {median_range(runs['busy_over_quiet_auto'], 'x')} |",
            f"| fixed {threads} (torch's own count, the default before) | {median_range(runs['quiet_fixed'], ' s')} "
            f"| {busy_fixed} | {median_range(runs['busy_over_quiet_fixed'], 'x')} |",
            "",
            f"Quiet, auto over fixed {threads}: {median_range(runs['quiet_auto_over_fixed'], 'x')}.",
        ]
    )


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


def markdown(results: dict, machine: dict, repeats: int) -> str:
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
    return "\n".join(lines)


def median_range(values: list[float], unit: str = "", scale: float = 1) -> str:
    """'median (min-max)' of values, or 'not reached' for none."""
    if not values:
        return "not reached"
    m, lo, hi = (scale * v for v in (statistics.median(values), min(values), max(values)))
    return f"{m:.2f}{unit} ({lo:.2f}-{hi:.2f})"


def process_markdown(runs: dict) -> str:
    """The whole-process measurements as a table: each line's ratio, median (min-max) of the runs."""
    reached = [v for v in runs["ours_to_98"] if v is not None]
    classic = [v for v in runs["classic_to_98"] if v is not None]
    rest = [w - t for w, t in zip(runs["epoch_wall"], runs["epoch_train"], strict=True)]
    n = len(runs["epoch_wall"])
    return "\n".join(
        [
            f"Whole processes, median (min-max) of {n} runs taken in turn, after one warm-up run:",
            "",
            "| what the user waits for | mnist_cnn | against | ratio |",
            "|---|---:|---:|---:|",
            f"| start to the first test line >= {100 * TARGET:.0f}% | {median_range(reached, ' s')} | classic: "
            f"{median_range(classic, ' s')} | {median_range(runs['to_98_speedups'], 'x')} faster |",
            f"| a 1-epoch run: all but training | {median_range(rest, ' s')} | training: "
            f"{median_range(runs['epoch_train'], ' s')} | {median_range(runs['rest_fractions'], '%', 100)} of training |",
            f"| `predict` on one image | {median_range(runs['predict'], ' s')} | `import torch`: "
            f"{median_range(runs['import_torch'], ' s')} | {median_range(runs['predict_ratios'], 'x')} |",
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="folder holding MNIST/raw/ (default: $MNIST_DATA_DIR, else ./data)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    p.add_argument("--process-repeats", type=int, default=3, help="runs of each whole process (0: none)")
    p.add_argument(
        "--busy", type=int, default=0, metavar="N", help="N repetitions quiet and beside a competing run"
    )
    p.add_argument("--busy-baseline", action="store_true", help="with --busy: also the fixed count beside it")
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
    results = (
        {name: summarize(runs[name], runs["classic"]) for name in args.contenders} if args.repeats else None
    )

    data = ["--data-dir", str(Path(args.data_dir).resolve())] if args.data_dir else []
    image = SCRIPTS.parent / "docs" / "digits" / "7.png"
    processes = (
        whole_processes(data, args.device, args.process_repeats, image) if args.process_repeats else None
    )

    busy = busy_machine(config, data, args.busy, args.busy_baseline) if args.busy else None

    machine = describe_machine(str(select_device(args.device)))
    if results:
        print(markdown(results, machine, args.repeats))
    if processes:
        print("\n" + process_markdown(processes))
    if busy:
        print("\n" + busy_markdown(busy, TORCH_DEFAULT_THREADS))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {
                    "machine": machine,
                    "config": config.to_dict(),
                    "results": results,
                    "processes": processes,
                    "busy": busy,
                },
                file,
                indent=2,
            )


if __name__ == "__main__":
    main()
