import torch

from mnist_cnn.augment import random_affine
from mnist_cnn.data import normalize


def digit_batch(n: int = 16) -> torch.Tensor:
    """Normalized images of a bright vertical bar on a dark background."""
    images = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    images[:, :, 6:22, 12:16] = 255
    return normalize(images)


def test_keeps_shape_dtype_and_value_range():
    images = digit_batch()
    out = random_affine(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= images.min() - 1e-5 and out.max() <= images.max() + 1e-5


def test_is_reproducible_under_a_seed_and_differs_between_seeds_and_images():
    images = digit_batch()
    a = random_affine(images, torch.Generator().manual_seed(1))
    b = random_affine(images, torch.Generator().manual_seed(1))
    c = random_affine(images, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # each image gets its own distortion


def test_moves_the_digit_but_keeps_it_and_the_background():
    images = digit_batch()
    out = random_affine(images, torch.Generator().manual_seed(3))
    assert not torch.allclose(out, images)
    background = images.min()
    # the corners stay background, and the ink keeps its area within the scaling's (0.9-1.1)^2
    assert torch.allclose(out[:, :, 0, 0], background.expand(16, 1), atol=1e-5)
    ink_before = (images - background).sum(dim=(1, 2, 3))
    ink_after = (out - background).sum(dim=(1, 2, 3))
    ratio = ink_after / ink_before
    assert (ratio > 0.9**2 - 0.05).all() and (ratio < 1.1**2 + 0.05).all()


def test_no_distortion_is_the_identity():
    images = digit_batch(4)
    out = random_affine(images, torch.Generator().manual_seed(0), degrees=0, translate=0, scale=(1, 1))
    assert torch.allclose(out, images, atol=1e-5)
