"""The classic pipeline, as pytorch/examples' mnist/main.py feeds its net: the baseline that
scripts/benchmark.py measures this package against.

torchvision's MNIST with per-image ToTensor + Normalize, DataLoader(shuffle=True, num_workers=1),
training this package's Net with the same optimizer, schedule, batch size and seed as `fit`. It
lives in the package, not in scripts/, so that the benchmark (which times it beside `fit`, in
one process) and `python scripts/classic.py` share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from .config import TrainConfig
from .data import MNIST_NORMALIZATION, resolve_data_dir
from .device import select_device
from .model import build_model
from .optim import build_optimizer


def loaders(config: TrainConfig) -> tuple[DataLoader, DataLoader]:
    """The training and test splits as pytorch/examples loads them: per-image transforms, a worker."""
    root = resolve_data_dir(config.data_dir)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(*MNIST_NORMALIZATION)])
    train = datasets.MNIST(root, train=True, transform=transform)
    test = datasets.MNIST(root, train=False, transform=transform)
    generator = torch.Generator().manual_seed(config.seed)
    return (
        DataLoader(train, batch_size=config.batch_size, shuffle=True, num_workers=1, generator=generator),
        DataLoader(test, batch_size=config.test_batch_size, num_workers=1),
    )


def fit_classic(config: TrainConfig, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
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
        test_loss, correct, total = 0.0, 0, 0
        with torch.no_grad():
            for data, target in test_loader:
                data, target = data.to(device), target.to(device)
                output = model(data)
                test_loss += F.nll_loss(output, target, reduction="sum").item()
                correct += int((output.argmax(dim=1) == target).sum())
                total += len(target)
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
