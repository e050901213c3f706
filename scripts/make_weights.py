"""Train the nets that ship in mnist_cnn/weights/ and write them with their metadata.

    python scripts/make_weights.py --data-dir DIR     # DIR holds MNIST/raw/ and FashionMNIST/raw/

Each net trains by its recipe in SHIPPED (the seed net's with --epochs 15; the improved net's V1
files by its 15-epoch recipe of the time, MNIST_V2 by today's 40-epoch one), seed 1, on the CPU
with a fixed thread count. With the same torch version and thread count the files come out bit
for bit as shipped: for each file the script prints its sha256 and whether it is the one
mnist_cnn.weights expects.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import tempfile
import time
from pathlib import Path

from mnist_cnn import TrainConfig, fit
from mnist_cnn.checkpoint import load_trained
from mnist_cnn.config import IMPROVED_V1, RECIPES
from mnist_cnn.files import write_atomic
from mnist_cnn.weights import WEIGHTS_DIR, ImprovedNetWeights, SeedNetWeights, WeightsEnum
from mnist_cnn.weights_file import net_metadata, weights_bytes

# (the member, its model, data set, and its recipe: what differs from TrainConfig's defaults)
SHIPPED: list[tuple[WeightsEnum, str, str, dict]] = [
    (SeedNetWeights.MNIST_V1, "seed", "mnist", {"epochs": 15}),
    (ImprovedNetWeights.MNIST_V1, "improved", "mnist", IMPROVED_V1),
    (ImprovedNetWeights.FASHION_MNIST_V1, "improved", "fashion-mnist", IMPROVED_V1),
    (ImprovedNetWeights.MNIST_V2, "improved", "mnist", RECIPES["improved"]),
]
# What decides a run's result, as the metadata records its recipe (not where or how it ran). The
# LATER_ ones came after the first shipped files, and are recorded only when a recipe uses them,
# so that those files still come out bit for bit as shipped.
RECIPE_FIELDS = (
    *("model", "model_args", "dataset", "epochs", "batch_size", "lr", "schedule", "schedule_start"),
    *("warmup", "momentum", "weight_decay", "augment", "seed", "precision", "channels_last", "threads"),
)
LATER_RECIPE_FIELDS = ("elastic", "erase", "label_smoothing", "ema", "teacher", "distill", "temperature")


def make(member: WeightsEnum, model: str, dataset: str, recipe: dict, args: argparse.Namespace) -> Path:
    """Train one shipped net and write its file into args.output_dir."""
    config = TrainConfig(
        model=model, dataset=dataset, data_dir=args.data_dir, device="cpu", threads=args.threads, **recipe
    )
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        history = fit(dataclasses.replace(config, save_model=True, output_dir=folder))
        seconds = time.perf_counter() - start
        trained = load_trained(Path(folder) / "last.pt")
    default = TrainConfig()
    recorded = {
        k: v
        for k, v in config.to_dict().items()
        if k in RECIPE_FIELDS or (k in LATER_RECIPE_FIELDS and v != getattr(default, k))
    }
    metadata = {
        **net_metadata(trained),
        "metrics": {"test_accuracy": history[-1]["test_accuracy"], "test_loss": history[-1]["test_loss"]},
        "recipe": recorded,
        "command": f"python scripts/make_weights.py --data-dir DIR --threads {args.threads}",
        "threads": args.threads,
    }
    path = Path(args.output_dir) / member.value[0]
    write_atomic(path, weights_bytes(trained.model, metadata))
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    same = "the shipped file, bit for bit" if sha256 == member.value[1] else "NOT the shipped file"
    print(
        f"{path.name}: {100 * history[-1]['test_accuracy']:.2f}% on {dataset}'s test set, "
        f"{seconds:.0f} s, sha256 {sha256}: {same}",
        flush=True,
    )
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="folder holding MNIST/raw/ and FashionMNIST/raw/")
    p.add_argument(
        "--threads", type=int, default=2, help="CPU threads, fixed: part of what fixes the bits (default: 2)"
    )
    p.add_argument(
        "--output-dir", default=str(WEIGHTS_DIR), help=f"where the files go (default: {WEIGHTS_DIR})"
    )
    p.add_argument("--only", nargs="+", metavar="FILE", help="make only these files")
    args = p.parse_args()
    made = [
        make(member, model, dataset, recipe, args)
        for member, model, dataset, recipe in SHIPPED
        if not args.only or member.value[0] in args.only
    ]
    if not made:
        sys.exit(f"no shipped file is called {' or '.join(args.only)}")


if __name__ == "__main__":
    main()
