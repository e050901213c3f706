"""The classic pipeline, as pytorch/examples' mnist/main.py feeds its net: the baseline we beat.

torchvision's MNIST with per-image ToTensor + Normalize, DataLoader(shuffle=True, num_workers=1),
training this package's Net with the same optimizer, schedule, batch size and seed as
`python -m mnist_cnn.train` (see mnist_cnn/classic.py). It prints the same per-epoch test line:

    python scripts/classic.py --data-dir data --epochs 1
"""

from __future__ import annotations

import argparse

from mnist_cnn import TrainConfig
from mnist_cnn.classic import fit_classic
from mnist_cnn.metrics import format_test_line


def main() -> None:
    p = argparse.ArgumentParser(description="Train the Net through the classic DataLoader pipeline.")
    p.add_argument("--data-dir")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    config = TrainConfig(data_dir=args.data_dir, epochs=args.epochs, seed=args.seed, device=args.device)
    fit_classic(config, on_epoch=lambda m: print(format_test_line(m), flush=True))


if __name__ == "__main__":
    main()
