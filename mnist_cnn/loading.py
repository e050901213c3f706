"""The trained net a user names, wherever it is: a checkpoint written by training (best.pt), a
weights file (.safetensors) or a torch.export program (.pt2) as export writes them, or shipped
weights by name (--weights)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import TrainedModel, check_dataset, load_trained
from .errors import MnistCnnError
from .exporters import read_pt2
from .weights import get_weights
from .weights_file import load_weights_file


def open_net(
    checkpoint: str | os.PathLike | None,
    weights: str | None,
    device: torch.device | str = "cpu",
    dataset: str | None = None,
) -> TrainedModel:
    """The net a command was given: a checkpoint written by training (best.pt), a weights file
    (.safetensors) or a .pt2 as export writes them, or shipped weights by name (--weights, see
    weights.get_weights). With dataset (--dataset), a net that learnt another data set is refused."""
    if checkpoint is not None and weights is not None:
        raise MnistCnnError("give a checkpoint or --weights, not both")
    if checkpoint is None and weights is None:
        raise MnistCnnError(
            "give a checkpoint, or --weights NAME (DEFAULT: the shipped improved net on MNIST)"
        )
    suffix = Path(checkpoint).suffix.lower() if checkpoint is not None else None
    if checkpoint is not None and suffix not in (".safetensors", ".pt2"):
        return load_trained(checkpoint, device, dataset)
    if checkpoint is not None:
        read = load_weights_file if suffix == ".safetensors" else read_pt2
        trained, source = read(checkpoint, device), str(checkpoint)
    else:
        trained, source = get_weights(str(weights)).load(device), f"--weights {weights}"
    check_dataset(source, trained.dataset, dataset)
    return trained
