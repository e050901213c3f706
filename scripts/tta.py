"""Test-time augmentation: does averaging a net's answers over shifted copies of each image help,
and what does it cost?

    python scripts/tta.py runs/val/last.pt --data-dir ../shared/data --val-split 5000   # choose
    python scripts/tta.py runs/final/last.pt --data-dir ../shared/data                  # report

Each image is also seen shifted by one pixel up, down, left and right (MNIST's borders are
background, so rolling the image moves the digit and nothing else); the five probability vectors
are averaged. A net trained with --val-split N is judged on those N held-out images, so that the
choice to use test-time augmentation is made without the test set. Prints the accuracy without
and with it, and the inference time of each (whole split, best of --repeats).
"""

from __future__ import annotations

import argparse
import time

import torch

from mnist_cnn.checkpoint import load_trained
from mnist_cnn.data import load_splits, resolve_data_dir
from mnist_cnn.machine import caption, describe_machine

SHIFTS = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]  # (down, right) in pixels


@torch.inference_mode()
def probabilities(
    model: torch.nn.Module, images: torch.Tensor, shifts: list[tuple[int, int]]
) -> torch.Tensor:
    """The mean over shifts of the net's class probabilities for each image, in batches of 1000."""
    model.eval()
    out = []
    for batch in images.split(1000):
        views = [batch.roll(shift, dims=(2, 3)) for shift in shifts]
        out.append(torch.stack([model(view).exp() for view in views]).mean(0))
    return torch.cat(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", help="folder holding MNIST/raw/ (default: $MNIST_DATA_DIR, else ./data)")
    p.add_argument(
        "--val-split", type=int, default=0, help="judge on the run's validation split (its --val-split)"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    trained = load_trained(args.checkpoint)
    if trained.val_split != args.val_split:  # the held-out images must be the ones it did not train on
        raise SystemExit(
            f"{args.checkpoint} was trained with --val-split {trained.val_split}, not {args.val_split}"
        )
    splits = load_splits(resolve_data_dir(args.data_dir), trained.dataset, val_split=args.val_split)
    split = "validation" if args.val_split else "test"
    print(
        f"{args.checkpoint}, {split} split ({len(splits.test_labels):,} images); {caption(describe_machine('cpu'))}\n"
    )
    print("| | accuracy | inference s (whole split) |\n|---|---:|---:|")
    for name, shifts in (("plain", SHIFTS[:1]), (f"{len(SHIFTS)} shifted views", SHIFTS)):
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            p_ = probabilities(trained.model, splits.test_images, shifts)
            seconds.append(time.perf_counter() - start)
        accuracy = (p_.argmax(1) == splits.test_labels).float().mean().item()
        print(f"| {name} | {100 * accuracy:.2f}% | {min(seconds):.2f} |")


if __name__ == "__main__":
    main()
