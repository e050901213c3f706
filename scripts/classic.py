"""The classic pipeline, as pytorch/examples' mnist/main.py feeds its net: the baseline we beat.

torchvision's MNIST with per-image ToTensor + Normalize, DataLoader(shuffle=True, num_workers=1),
training this package's Net with the same optimizer, schedule, batch size and seed as
`python -m mnist_cnn.train`. Run on its own it prints the same per-epoch test line:

    python scripts/classic.py --data-dir ../shared/data --epochs 1
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from mnist_cnn import TrainConfig, build_model
from mnist_cnn.data import MNIST_NORMALIZATION, resolve_data_dir
from mnist_cnn.device import select_device
from mnist_cnn.metrics import format_test_line
from mnist_cnn.train import build_optimizer


def loaders(config: TrainConfig) -> tuple[DataLoader, DataLoader]:
    root = resolve_data_dir(config.data_dir)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(*MNIST_NORMALIZATION)])
    train = datasets.MNIST(root, train=True, transform=transform)
    test = datasets.MNIST(root, train=False, transform=transform)
    generator = torch.Generator().manual_seed(config.seed)
    return (
        DataLoader(train, batch_size=config.batch_size, shuffle=True, num_workers=1, generator=generator),
        DataLoader(test, batch_size=config.test_batch_size, num_workers=1),
    )


def fit_classic(config: TrainConfig, on_epoch=None) -> list[dict]:
    """Train like pytorch/examples; returns metrics per epoch in the shape `mnist_cnn.fit` uses."""
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    train_loader, test_loader = loaders(config)
    optimizer, scheduler = build_optimizer(model, config, len(train_loader))
    history = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        start = time.perf_counter()
        for data, target in train_loader:
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
            scheduler.step()
        train_seconds = time.perf_counter() - start

        model.eval()
        start = time.perf_counter()
        test_loss, correct = 0.0, 0
        with torch.no_grad():
            for data, target in test_loader:
                data, target = data.to(device), target.to(device)
                output = model(data)
                test_loss += F.nll_loss(output, target, reduction="sum").item()
                correct += (output.argmax(dim=1) == target).sum().item()
        total = len(test_loader.dataset)
        metrics = {
            "epoch": epoch,
            "test_loss": test_loss / total,
            "test_correct": correct,
            "test_total": total,
            "test_accuracy": correct / total,
            "train_seconds": train_seconds,
            "test_seconds": time.perf_counter() - start,
        }
        history.append(metrics)
        if on_epoch:
            on_epoch(metrics)
    return history


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
