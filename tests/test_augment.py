import pytest
import torch

from mnist_cnn import MnistCnnError, TrainConfig
from mnist_cnn.augment import (
    ERASE_SIZE,
    augment_batch,
    distort,
    erase_patches,
    random_affine,
    random_displacements,
    random_distortions,
    random_patches,
)
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


def test_elastic_displacements_move_pixels_by_about_alpha_and_are_seeded():
    fields = random_displacements(500, 28, torch.Generator().manual_seed(0), alpha=1.5)
    assert fields.shape == (500, 28, 28, 2)
    pixels = fields * 14  # grid units to pixels: the grid spans 2 over 28 pixels
    assert pixels[:, 8:20, 8:20].square().mean().sqrt().item() == pytest.approx(1.5, rel=0.05)
    # Smooth: neighbouring pixels move nearly alike (uniform noise would not).
    step = (pixels[:, :, 1:] - pixels[:, :, :-1]).abs().mean() / pixels.abs().mean()
    assert step < 0.3
    again = random_displacements(500, 28, torch.Generator().manual_seed(0), alpha=1.5)
    assert torch.equal(fields, again)


def test_a_zero_displacement_leaves_the_affine_distortion_as_it_was():
    images = torch.rand(4, 1, 28, 28)
    theta = random_distortions(4, torch.Generator().manual_seed(0))
    assert torch.equal(distort(images, theta, torch.zeros(4, 28, 28, 2)), distort(images, theta))
    assert not torch.equal(distort(images, theta, torch.full((4, 28, 28, 2), 0.1)), distort(images, theta))


def test_erased_patches_are_background_and_the_rest_is_untouched():
    images = torch.rand(200, 1, 28, 28)
    patches = random_patches(200, torch.Generator().manual_seed(0), probability=0.5)
    erased = erase_patches(images, patches)
    changed = (erased != images).flatten(1).sum(1)
    has_patch = patches[:, 2] > 0
    assert 70 < has_patch.sum() < 130  # about half of them
    assert (changed[~has_patch] == 0).all() and (changed[has_patch] > 0).all()
    background = images.amin(dim=(1, 2, 3), keepdim=True).expand_as(images)
    assert torch.equal(erased[erased != images], background[erased != images])
    sides = changed[has_patch].float().sqrt() / 28  # about the square root of the patch's area
    assert (sides > ERASE_SIZE[0] - 0.05).all() and (sides < ERASE_SIZE[1] + 0.05).all()
    assert torch.equal(erase_patches(images, random_patches(200, torch.Generator(), 0.0)), images)


def test_processes_sharing_a_batch_get_the_parts_of_the_whole_batchs_augmentation():
    images = torch.rand(10, 1, 28, 28)
    whole = augment_batch(images, torch.Generator().manual_seed(3), elastic=1.0, erase=0.5)
    parts = [
        augment_batch(
            part, torch.Generator().manual_seed(3), 10, lambda t, r=rank: t.tensor_split(2)[r], 1.0, 0.5
        )
        for rank, part in enumerate(images.tensor_split(2))
    ]
    assert torch.allclose(torch.cat(parts), whole)


def test_elastic_and_erase_add_to_augment_and_are_validated():
    with pytest.raises(MnistCnnError, match="--elastic adds to --augment"):
        TrainConfig(elastic=1.0)
    with pytest.raises(MnistCnnError, match="--erase must be in"):
        TrainConfig(augment=True, erase=1.5)
    TrainConfig(augment=True, elastic=1.0, erase=0.5)
