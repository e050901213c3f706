"""The search for the best net under a parameter budget: `python -m mnist_cnn.search`.

Its flags, one call into the study (study.py: the space, the trials, the storage), and the
report: the best trials, the knobs' importances, what each half of the space gave, and the files
summary.json, best.json and frontier.png. Run it again and it goes on with its study.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cli import ArgumentParser, add_data_arguments, exit_on_error
from .data import load_splits, resolve_data_dir
from .device import select_device
from .errors import MnistCnnError
from .files import write_atomic
from .study import (
    BUDGET,
    WIDTH_KNOBS,
    Search,
    check_protocol,
    confirm,
    finished,
    fixed_knobs,
    frontier_figure,
    open_study,
    point_config,
    protocol_value,
    summarize,
    work,
    work_in_processes,
)
from .sweep import job_threads

if TYPE_CHECKING:
    import optuna


def describe_trial(row: dict[str, Any]) -> str:
    """One line: the trial's score, size and what it drew."""
    knobs = ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in row["params"].items()
        if k not in WIDTH_KNOBS  # shown together, with the fifth width, as widths
    )
    widths = "-".join(str(w) for w in row["model_args"]["widths"])
    return (
        f"#{row['number']:<4} {100 * row['val_accuracy']:.2f}%  {row['parameters']:>6,} parameters  "
        f"widths {widths}  {knobs}"
    )


def describe_region(name: str, half: dict[str, Any]) -> str:
    """'on: 12 trials, 5 pruned, median 99.10%, best 99.24%'."""
    scores = (
        ""
        if half["median"] is None
        else f", median {100 * half['median']:.2f}%, best {100 * half['best']:.2f}%"
    )
    return f"{name}: {half['trials']} trials, {half['pruned']} pruned{scores}"


def report(study: optuna.Study, output_dir: Path, top: int) -> dict[str, Any]:
    """Print the study's summary; write it (summary.json), the best trial's run (best.json) and
    the accuracy-against-parameters picture (frontier.png) into output_dir."""
    from .plots import NoMatplotlib, save_figure

    summary = summarize(study, top)
    counts = summary["trials"]
    print(
        f"study {summary['study']}: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['fail']} failed; {summary['trial_epochs']} trial-epochs, "
        f"{summary['train_seconds'] / 60:.1f} minutes of training"
    )
    if fixed := summary["search"].get("fixed"):
        print(f"fixed: {protocol_value('fixed', fixed)}")
    for row in summary["best"]:
        print("  " + describe_trial(row))
    if summary["importances"]:
        print("importances: " + ", ".join(f"{k} {v:.2f}" for k, v in summary["importances"].items()))
    for knob, halves in summary["regions"].items():
        print(f"{knob}: " + "; ".join(describe_region(name, half) for name, half in halves.items()))
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(output_dir / "summary.json", json.dumps(summary, indent=2).encode())
    if summary["best"]:
        config = point_config(summary["best"][0]["params"], Search.from_dict(summary["search"]))
        config = replace(config, threads=None, data_dir=None)  # what it learns, not where it ran
        write_atomic(output_dir / "best.json", json.dumps(config.to_dict(), indent=2).encode())
    try:
        save_figure(frontier_figure(summary), output_dir / "frontier.png")
    except NoMatplotlib as error:
        print(f"note: {error}", file=sys.stderr)
    print(f"wrote {output_dir / 'summary.json'}, best.json and frontier.png")
    return summary


# ---------------------------------------------------------------------------------------------
# The command


# The command's counts: flag -> (default, the least it may be, what it is).
COUNTS: dict[str, tuple[int | None, int, str]] = {
    "--max-params": (BUDGET, 1, "the parameter budget"),
    "--trials": (Search.trials, 0, "finish trials until the study has N, complete or pruned; 0: only report"),
    "--epochs": (Search.epochs, 1, "each trial's epochs"),
    "--val-split": (Search.val_split, 1, "training images held out to score the trials on"),
    "--seed": (Search.seed, -(2**63), "every trial's training seed"),
    "--jobs": (1, 1, "trials at a time, in processes"),
    "--threads": (None, 1, "CPU threads of each trial (default: auto alone, the cores / --jobs in parallel)"),
    "--top": (10, 1, "best trials to show"),
}


def parser() -> ArgumentParser:
    p = ArgumentParser(
        "mnist_cnn.search",
        description="Search the nets of the improved net's family, and the recipe's main knobs, for the most "
        "accurate on the validation split within a parameter budget (an Optuna study). Run it again to go on.",
    )
    for flag, (default, _, text) in COUNTS.items():
        shown = "" if default is None else " (default: %(default)s)"
        p.add_argument(flag, type=int, default=default, metavar="N", help=f"{text}{shown}")
    p.add_argument(
        "--device", default="cpu", help="where the trials train: cpu, cuda, cuda:N, mps (default: cpu)"
    )
    p.add_argument(
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="where the study (study.db) and its report go (default: runs/search-<max params>)",
    )
    p.add_argument(
        "--storage",
        metavar="PATH|URL",
        help="the study's storage: a SQLite file, or a database URL that several machines share "
        "(default: DIR/study.db)",
    )
    p.add_argument("--study-name", metavar="NAME", help="default: max-params-<N>")
    p.add_argument(
        "--fix",
        nargs="+",
        default=[],
        metavar="KNOB=VALUE",
        help="hold knobs of the space at one value, e.g. --fix separable=on augment=off",
    )
    p.add_argument(
        "--confirm",
        type=int,
        nargs="+",
        metavar="SEED",
        help="then train the best net and the improved net with each seed, --epochs each, on the "
        "validation split (a sweep: run it again and the finished runs are kept)",
    )
    add_data_arguments(p)
    return p


@exit_on_error
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    for flag, (_, least, _) in COUNTS.items():
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if value is not None and value < least:
            raise MnistCnnError(f"{flag} must be at least {least}, got {value}")
    output_dir = args.output_dir or Path("runs") / f"search-{args.max_params}"
    output_dir.mkdir(parents=True, exist_ok=True)
    threads = job_threads(args.jobs, args.threads)
    search = Search(
        max_params=args.max_params,
        trials=args.trials,
        epochs=args.epochs,
        val_split=args.val_split,
        seed=args.seed,
        fixed=fixed_knobs(args.fix),
        storage=args.storage or str(output_dir / "study.db"),
        study_name=args.study_name or f"max-params-{args.max_params}",
        threads=threads,
        device=args.device,
        data_dir=args.data_dir,
        cache=args.cache,
    )
    study = open_study(search)
    done = finished(study)
    if args.trials > done:
        check_protocol(study, search)
        # The data, once, before any trial: a missing file is one line, not one per process.
        load_splits(
            resolve_data_dir(search.data_dir),
            "mnist",
            select_device(search.device),
            search.cache,
            search.val_split,
        )
        print(
            f"study {search.study_name} in {search.storage}: {done} of {search.trials} trials "
            f"finished; {args.jobs} at a time, {threads or 'auto'} thread(s) each",
            flush=True,
        )
        if args.jobs == 1:
            work(search)
        else:
            work_in_processes(search, args.jobs)
    summary = report(study, output_dir, args.top)
    if args.confirm:
        print(
            f"confirming on seeds {', '.join(map(str, args.confirm))}, {search.epochs} epochs each, on the validation split"
        )
        summary["confirmed"] = confirm(summary, search, args.confirm, output_dir, args.jobs)
        for name, result in summary["confirmed"].items():
            print(
                f"{name}: {result['parameters']:,} parameters, validation at epoch {search.epochs}: mean "
                f"{100 * result['final_mean']:.2f}%, min {100 * result['final_min']:.2f}% "
                f"({result['seconds_per_epoch']:.1f} s an epoch)"
            )
    return summary


if __name__ == "__main__":
    main()
