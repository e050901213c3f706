"""How the weights move: SGD with Nesterov momentum, its learning-rate schedules, and an
exponential moving average of the weights (--ema)."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .config import TrainConfig


def build_optimizer(
    model: nn.Module, config: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with Nesterov momentum, and config.schedule's learning rate, stepped every batch.

    onecycle: a warm-up over config.warmup of the run, then a cosine anneal to zero. The warm-up
    lets the BatchNorm-free seed net take a high peak rate without diverging; the long anneal is
    what makes one epoch enough for it.
    restarts: cosine anneals to zero over 1, 2, 4, ... epochs (the last one cut to end with the
    run), each restarting at the peak. Every cycle ends on a well-settled net, so epoch 1 is
    already good, and the long last cycle gives the final accuracy (SGDR, Loshchilov & Hutter).
    """
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    # One schedule over the run's epochs; over the added ones when --epochs extended a finished run.
    total_steps = (config.epochs - config.schedule_start) * steps_per_epoch
    if config.schedule == "restarts":
        factor = partial(cosine_restarts, first_cycle=steps_per_epoch, total=total_steps)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.warmup, cycle_momentum=False
    )
    return optimizer, scheduler


def cosine_restarts(step: int, first_cycle: int, total: int) -> float:
    """The learning-rate factor at step: cosine cycles of first_cycle steps, doubling in length;
    a cycle after which the next would not fit is the last, and stretches to end at total."""
    start, length = 0, first_cycle
    while start + 3 * length <= total and step >= start + length:
        start, length = start + length, 2 * length
    if start + 3 * length > total:
        length = total - start
    return 0.5 * (1 + math.cos(math.pi * min(step - start, length) / length))


def exponential_average(model: nn.Module, decay: float) -> AveragedModel:
    """A copy of model whose weights (and BatchNorm statistics) follow an exponential moving
    average of model's, updated after every step: it smooths out the last steps' noise, and
    usually tests better than the weights themselves (Polyak averaging)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
