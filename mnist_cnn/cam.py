"""What a net sees in one image: every layer's feature maps, the class activation maps, Grad-CAM.

The nets end in a 1x1 convolution that gives one spatial map per class, then global average
pooling: each class's score (its logit, before log_softmax) is the mean of its map. So the maps
show where the net found each class, exactly: the class activation maps of Zhou et al. 2016
("Learning Deep Features for Discriminative Localization"). plots.explain_figure draws them.

    from mnist_cnn import ImprovedNetWeights, improved_net
    from mnist_cnn.cam import class_activation_maps

    weights = ImprovedNetWeights.DEFAULT
    cams = class_activation_maps(improved_net(weights=weights), weights.transforms()("docs/digits/7.png"))
    cams.predicted, cams.maps.shape, cams.upsampled(cams.predicted).shape  # 7, (10, 3, 3), (28, 28)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# A hook given each layer's torchsummary name, module and output; what it returns, when not None,
# replaces the output.
LayerHook = Callable[[str, nn.Module, torch.Tensor], torch.Tensor | None]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """model in eval mode (Dropout off, BatchNorm's running statistics), put back as it was after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def this_thread_only(hook: Callable[..., Any]) -> Callable[..., Any]:
    """hook, called only for passes run by the thread that made it: a server's workers share one
    net, and another thread's image must not land in this one's maps."""
    caller = threading.get_ident()

    def filtered(*args: Any) -> Any:
        return hook(*args) if threading.get_ident() == caller else None

    return filtered


@contextmanager
def hooked_layers(model: nn.Module, hook: LayerHook) -> Iterator[None]:
    """Call hook after each leaf module runs, with the name torchsummary gives that layer: its
    class name and how many layers ran before it, plus one ("Conv2d-1", "ReLU-2", ...)."""
    # torchsummary hooks every module that is not a container; in these nets those are the leaves.
    leaves = [m for m in model.modules() if next(m.children(), None) is None and m is not model]
    calls = count(1)

    @this_thread_only
    def named_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        return hook(f"{type(module).__name__}-{next(calls)}", module, output)

    handles = [leaf.register_forward_hook(named_hook) for leaf in leaves]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def as_batch(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """One image (1, H, W), as to_mnist gives it, or a batch of it (1, 1, H, W) -> a batch of one
    on model's device."""
    batch = image[None] if image.dim() == 3 else image
    if batch.dim() != 4 or tuple(batch.shape[:2]) != (1, 1):
        raise ValueError(f"expected one image of shape (1, H, W), got {tuple(image.shape)}")
    return batch.to(next(model.parameters()).device, torch.float32)


def feature_maps(model: nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each layer's output for one image, in the order the layers ran, named as torchsummary
    names them ("Conv2d-1": (8, 26, 26) in the seed net, ...): (C, h, w) tensors on the CPU."""
    maps: dict[str, torch.Tensor] = {}

    def keep(name: str, module: nn.Module, output: torch.Tensor) -> None:
        # A copy: the in-place ReLU after a convolution overwrites the convolution's output.
        maps[name] = output[0].detach().clone().cpu()

    with eval_mode(model), torch.no_grad(), hooked_layers(model, keep):
        model(as_batch(model, image))
    return maps


def first_filters(model: nn.Module) -> torch.Tensor:
    """The first convolution's weights (out channels, in channels, kh, kw), on the CPU."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"{type(model).__name__} has no convolution")
    return conv.weight.detach().cpu()


def global_pool(model: nn.Module) -> nn.AdaptiveAvgPool2d:
    """The net's global average pooling, whose input is the class maps."""
    pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if not pools:
        raise ValueError(f"{type(model).__name__} has no global average pooling, so no class maps")
    return pools[-1]


def upsample(coarse: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A coarse map (h, w) stretched bilinearly over an image of size (H, W), as Zhou et al. do.

    Read it as "which part of the digit", not "which pixel": each cell of a 2x2 or 3x3 class map
    sees a 24x24 window of a 28x28 input, and neighbouring cells' windows are 4 pixels apart.
    """
    return F.interpolate(coarse[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


@dataclass(frozen=True)
class ClassActivationMaps:
    """One image's class maps: the output of the 1x1 convolution, before global average pooling."""

    maps: torch.Tensor  # (classes, h, w): 2x2 for the seed net on 28x28 inputs, 3x3 for the improved net
    log_probs: torch.Tensor  # (classes,): what the net returned
    size: tuple[int, int]  # the input's (H, W)

    @property
    def scores(self) -> torch.Tensor:
        """Each class's score, the logit that log_softmax takes: its map's mean, as pooling takes it."""
        return self.maps.mean(dim=(1, 2))

    @property
    def probabilities(self) -> torch.Tensor:
        return self.log_probs.exp()

    def ranked(self) -> list[int]:
        """The classes, likeliest first."""
        return self.log_probs.argsort(descending=True).tolist()

    @property
    def predicted(self) -> int:
        return int(self.log_probs.argmax())

    def upsampled(self, index: int) -> torch.Tensor:
        """Class index's map stretched over the input: (H, W), in the score's units."""
        return upsample(self.maps[index], self.size)


def class_activation_maps(model: nn.Module, image: torch.Tensor) -> ClassActivationMaps:
    """The class maps of one image (1, H, W) and the net's log-probabilities, on the CPU."""
    captured: list[torch.Tensor] = []

    @this_thread_only
    def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0][0].detach().clone().cpu())

    handle = global_pool(model).register_forward_pre_hook(keep)
    try:
        with eval_mode(model), torch.no_grad():
            log_probs = model(as_batch(model, image))[0].float().cpu()
    finally:
        handle.remove()
    height, width = image.shape[-2:]
    return ClassActivationMaps(captured[-1].float(), log_probs, (height, width))


class ClassMap(NamedTuple):
    """The predicted class, its probability and its class map, stretched over the input and not."""

    index: int  # type: ignore[assignment]  # hides tuple.index, which no one calls on a ClassMap
    probability: float
    map: torch.Tensor  # (H, W): 28x28 for an image in the MNIST form; .tolist() gives plain numbers
    coarse: torch.Tensor  # (h, w): the map as the net made it (2x2 or 3x3); its mean is scores[index]
    scores: torch.Tensor  # (classes,): every class's score (logit); their softmax is the probabilities


def predicted_class_map(model: nn.Module, image: torch.Tensor) -> ClassMap:
    """What the net read in one image (1, H, W) and where it found it: the map to lay over the
    digit, in the score's units (draw it from its lowest value to its highest, as explain's picture
    does: only the differences between classes' scores count, so its sign means little)."""
    cams = class_activation_maps(model, image)
    best = cams.predicted
    return ClassMap(best, float(cams.probabilities[best]), cams.upsampled(best), cams.maps[best], cams.scores)


def grad_cam(
    model: nn.Module, image: torch.Tensor, target: int | None = None, layer: str | None = None
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of class target (default: the predicted class) at layer (a
    feature_maps name; default: the last 3x3 convolution): the layer's channels, each weighted by
    the mean gradient of the class's score over it, summed and rectified. (h, w), >= 0, on the CPU.

    At the last 3x3 convolution it has the class maps' resolution; an earlier layer ("Conv2d-8":
    8x8 in the seed net) gives a finer map. At the input of the 1x1 convolution it is exactly the
    class map, rectified and divided by its number of cells: the pooling is linear.
    """
    pool = global_pool(model)
    found: dict[str, torch.Tensor] = {}
    names: list[str] = []

    def watch(name: str, module: nn.Module, output: torch.Tensor) -> torch.Tensor | None:
        names.append(name)
        if module is pool:
            found["scores"] = output.flatten()
        is_default = isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3)
        if name == layer or (layer is None and is_default):
            found["activations"] = output
            # The rest of the net gets a copy: an in-place ReLU would overwrite what we differentiate.
            return output.clone()
        return None

    with eval_mode(model), torch.enable_grad(), hooked_layers(model, watch):
        model(as_batch(model, image))
    if "activations" not in found:
        raise ValueError(f"no layer {layer!r}; the layers are {', '.join(names)}")
    scores, activations = found["scores"], found["activations"]
    target = int(scores.argmax()) if target is None else target
    (gradients,) = torch.autograd.grad(scores[target], activations)
    weights = gradients[0].mean(dim=(1, 2))  # one per channel
    return torch.relu((weights[:, None, None] * activations[0]).sum(dim=0)).detach().cpu()


@dataclass(frozen=True)
class Explanation:
    """Everything explain's picture shows of one image."""

    image: torch.Tensor  # (1, H, W): the input as the net saw it (normalized)
    filters: torch.Tensor  # the first convolution's weights
    features: dict[str, torch.Tensor]  # feature_maps(model, image)
    cams: ClassActivationMaps


def explain(model: nn.Module, image: torch.Tensor) -> Explanation:
    """Feature maps, first filters and class maps of one image (1, H, W)."""
    image = image.reshape(image.shape[-3:]).float().cpu()
    return Explanation(
        image, first_filters(model), feature_maps(model, image), class_activation_maps(model, image)
    )
