"""What a training step minimizes: the labels' NLL loss (with label smoothing), and with a
teacher (train --teacher) the KL divergence from its softened answers (knowledge distillation)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_trained
from .config import TrainConfig
from .errors import MnistCnnError


def classification_loss(
    log_probs: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """The summed NLL loss of a batch. With label smoothing e, each target is 1 - e on its class
    and e spread evenly over all ten, so the net is not pushed towards ever more confident
    answers (Szegedy et al. 2016): (1 - e) NLL + e (mean over classes of -log p)."""
    loss = F.nll_loss(log_probs, labels, reduction="sum")
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * log_probs.mean(dim=1).sum()
    return loss


class Teacher(NamedTuple):
    """A trained net the run learns from (train --teacher), and how (see distillation_loss)."""

    model: nn.Module  # in eval mode
    weight: float  # of its answers in the loss; the labels' is 1 - weight
    temperature: float


def distillation_loss(
    log_probs: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float
) -> torch.Tensor:
    """The summed KL divergence of the student's answers from the teacher's, both softened by
    temperature T: softened, the teacher's answers say which wrong classes look alike (a 7 a bit
    like a 1), more than a label can. Times T^2, so that its gradients keep their size as T
    changes (Hinton et al. 2015, "Distilling the knowledge in a neural network")."""
    student = F.log_softmax(log_probs.float() / temperature, dim=1)
    teacher = F.log_softmax(teacher_log_probs.float() / temperature, dim=1)
    return F.kl_div(student, teacher, reduction="sum", log_target=True) * temperature**2


def batch_loss(
    log_probs: torch.Tensor,
    labels: torch.Tensor,
    images: torch.Tensor,
    label_smoothing: float = 0.0,
    teacher: Teacher | None = None,
) -> torch.Tensor:
    """A batch's summed loss: the labels' (classification_loss), mixed with a teacher's answers
    on the same images when there is one."""
    loss = classification_loss(log_probs, labels, label_smoothing)
    if teacher is None:
        return loss
    with torch.no_grad():
        answers = teacher.model(images)
    soft = distillation_loss(log_probs, answers, teacher.temperature)
    return (1 - teacher.weight) * loss + teacher.weight * soft


def load_teacher(config: TrainConfig, device: torch.device) -> Teacher | None:
    """config.teacher's net, on device, ready to teach (None without one). It must have learnt
    the same data set from the same training split (--val-split): a teacher that saw the images
    this run validates on would leak them, and the two nets' inputs are normalized alike."""
    if config.teacher is None:
        return None
    try:
        with torch.random.fork_rng(devices=[]):  # building the net draws weights: not from the run's stream
            trained = load_trained(config.teacher, device, config.dataset)
    except MnistCnnError as error:
        raise MnistCnnError(f"--teacher: {error}") from None
    if trained.val_split != config.val_split:
        raise MnistCnnError(
            f"--teacher {config.teacher} was trained with --val-split {trained.val_split}, this run has "
            f"{config.val_split}: train the teacher on the same split"
        )
    model = trained.model
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return Teacher(model, config.distill, config.temperature)
