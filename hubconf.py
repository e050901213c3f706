"""torch.hub entry points for the trained nets of mnist-cnn:

    model = torch.hub.load("path/to/mnist-cnn", "improved_net", source="local", weights="DEFAULT")
    model = torch.hub.load("owner/mnist-cnn", "seed_net", weights="MNIST_V1")  # once published

Each takes weights= (a member of mnist_cnn.SeedNetWeights / ImprovedNetWeights, or its name) and
returns the net in eval mode; without weights, an untrained net.
"""

dependencies = ["torch", "safetensors", "PIL", "numpy"]

from mnist_cnn.weights import improved_net, seed_net  # noqa: E402 (dependencies comes first, as torch.hub reads it)

__all__ = ["improved_net", "seed_net"]
