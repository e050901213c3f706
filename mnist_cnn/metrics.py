"""A run's per-epoch metrics: the test line pytorch/examples prints, and metrics.json/.csv."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from .files import write_atomic

SPLIT_NAMES = {"test": "Test set", "val": "Validation set"}


def evaluated_split(metrics: dict) -> str:
    """Which split an epoch's metrics were measured on: "val" with --val-split, else "test"."""
    return "val" if "val_accuracy" in metrics else "test"


def format_test_line(metrics: dict) -> str:
    """The per-epoch line of pytorch/examples' mnist/main.py (on the validation split with
    --val-split)."""
    split = evaluated_split(metrics)
    return (
        f"{SPLIT_NAMES[split]}: Average loss: {metrics[f'{split}_loss']:.4f}, "
        f"Accuracy: {metrics[f'{split}_correct']}/{metrics[f'{split}_total']} "
        f"({100 * metrics[f'{split}_accuracy']:.2f}%)"
    )


def write_metrics(output_dir: str | os.PathLike, history: list[dict]) -> None:
    """The per-epoch history as metrics.json and metrics.csv in output_dir."""
    output_dir = Path(output_dir)
    write_atomic(output_dir / "metrics.json", json.dumps(history, indent=2).encode())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_atomic(output_dir / "metrics.csv", text.getvalue().encode())
