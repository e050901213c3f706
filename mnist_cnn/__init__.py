"""mnist-cnn: the seed's 9,032-parameter fully convolutional net for MNIST, trained fast."""

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .config import TrainConfig
from .data import load_mnist
from .errors import MnistCnnError
from .loading import open_net
from .model import MODELS, Net, build_model, count_parameters
from .weights import ImprovedNetWeights, SeedNetWeights, improved_net, seed_net, separable_net

__all__ = [
    "ImprovedNetWeights",
    "MODELS",
    "MnistCnnError",
    "Net",
    "SeedNetWeights",
    "TrainConfig",
    "build_model",
    "count_parameters",
    "evaluate_split",
    "fit",
    "improved_net",
    "load_checkpoint",
    "load_mnist",
    "load_model",
    "open_net",
    "save_checkpoint",
    "seed_net",
    "separable_net",
    "train_epoch",
]

__version__ = "0.2.0"


def __getattr__(name: str):
    # The training loop is imported on first use: using a trained net never pays for it, and
    # importing mnist_cnn.train here would make `python -m mnist_cnn.train` warn that the module
    # was imported twice.
    if name in {"fit", "train_epoch", "evaluate_split"}:
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
