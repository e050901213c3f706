"""Digits drawn with a pen of any width, on a picture of any size, come out as MNIST's are:
full-strength strokes about 2 pixels wide (MNIST's median, as stroke_width measures it, is 1.85)."""

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mnist_cnn.preprocess import stroke_width, to_mnist

from .helpers import ink_of

SEVEN = [(100, 80), (300, 80), (140, 340)]  # on a 400x400 page: a bar, then a long slant
SLANT = (140 - 300, 340 - 80)


def pen_seven(width: int, size: int = 400, dark_on_light: bool = True) -> Image.Image:
    """The 7 drawn as a polyline with a pen width pixels wide, on a size x size page."""
    paper, pen = (255, 0) if dark_on_light else (0, 255)
    image = Image.new("L", (size, size), paper)
    points = [(x * size / 400, y * size / 400) for x, y in SEVEN]
    ImageDraw.Draw(image).line(points, fill=pen, width=width, joint="curve")
    return image


def stroke_widths(ink: torch.Tensor) -> tuple[float, float]:
    """The widths of the 7's bar and slant in 28x28 ink: the ink summed across each stroke (a
    full-strength stroke w pixels wide sums to w)."""
    rows, cols = torch.nonzero(ink > 0.2, as_tuple=True)
    top, bottom, left, right = map(int, (rows.min(), rows.max(), cols.min(), cols.max()))
    bar = ink[: top + (bottom - top) // 3, left + (right - left) // 8].sum()  # a column crossing the bar only
    slant = ink[top + 2 * (bottom - top) // 3].sum()  # a row crossing the slant only, obliquely
    return float(bar), float(slant) * abs(SLANT[1]) / math.hypot(*SLANT)


@pytest.mark.parametrize(
    ("width", "size", "dark_on_light"),
    [(1, 400, True), (2, 400, True), (3, 400, True), (4, 400, True), (8, 400, True)]
    + [(2, 400, False), (1, 100, True), (1, 60, True), (6, 2000, True), (30, 400, True)],
)
def test_any_pen_gives_full_strength_strokes_about_2_pixels_wide(width, size, dark_on_light):
    ink = ink_of(to_mnist(pen_seven(width, size, dark_on_light)))
    assert float(ink.max()) == pytest.approx(1.0, abs=0.02)
    bar, slant = stroke_widths(ink)
    assert 1.5 <= bar <= 4 and 1.5 <= slant <= 4, (bar, slant)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_a_thin_pen_reads_like_a_thick_one(width):
    thick = ink_of(to_mnist(pen_seven(30)))  # 2 pixels wide once in the digit box: MNIST's own
    thin = ink_of(to_mnist(pen_seven(width)))
    a, b = thick > 0.5, thin > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.6  # the same strokes where they are strong
    assert torch.nn.functional.cosine_similarity(thick.flatten(), thin.flatten(), dim=0) > 0.9


@pytest.mark.parametrize("width", [40, 60])
def test_strokes_already_wide_enough_keep_their_width(width):
    bar, slant = stroke_widths(ink_of(to_mnist(pen_seven(width))))
    scaled = width * 20 / (SEVEN[2][1] - SEVEN[0][1] + width)  # the 7 is 260 pixels tall, plus the pen
    assert bar == pytest.approx(scaled, rel=0.15) and slant == pytest.approx(scaled, rel=0.15)


@pytest.mark.parametrize("width", [1, 3, 8])
def test_stroke_width_of_a_straight_stroke_is_its_width(width):
    band = np.zeros((40, 300), np.float32)
    band[10 : 10 + width, 20:280] = 1
    assert stroke_width(band) == pytest.approx(width, rel=0.05)
    assert stroke_width(band.T.copy()) == pytest.approx(width, rel=0.05)
