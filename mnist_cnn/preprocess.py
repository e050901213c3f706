"""Any picture of one digit -> the MNIST form: 1x28x28, light digit on black, normalized.

MNIST was made by scaling each digit to fit a 20x20 box, keeping its aspect ratio, and placing
it in a 28x28 field so that its centre of mass is at the centre. We do the same, after turning
the picture gray, making the ink light on a dark background, and cropping to the ink.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import MNIST_NORMALIZATION, Normalization, normalize
from .errors import MnistCnnError, first_line

DIGIT_BOX = 20  # pixels: the longer side of the digit
FIELD = 28
INK_THRESHOLD = 0.2  # of the darkest-to-lightest range: fainter pixels are paper
IMAGE_SUFFIXES = {suffix for suffix, _ in Image.registered_extensions().items()}


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open and decode an image file; a file that is not a whole, sane image is an MnistCnnError."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its two size limits: treat that as the bomb it may be.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return image.copy()
    except FileNotFoundError:
        raise MnistCnnError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise MnistCnnError(f"{path}: is a folder, not an image") from None
    except UnidentifiedImageError:
        raise MnistCnnError(f"{path}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MnistCnnError(f"{path}: too many pixels (a possible decompression bomb)") from None
    except Exception as error:  # decoders fail in many ways on damaged files
        raise MnistCnnError(f"{path}: truncated or corrupt image ({first_line(error)})") from None


def ink(image: Image.Image) -> np.ndarray:
    """The image as float32 ink in [0, 1] (1: the most ink) on a zero background.

    Transparency, when the picture has any, is the ink: a digit drawn on a clear background.
    Otherwise gray levels are used, inverted when the border (the paper) is lighter than mid-gray.
    """
    image = ImageOps.exif_transpose(image)  # a phone photo's "this side up"
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA").getchannel("A"), dtype=np.float32) / 255
        if alpha.min() < 1:
            return alpha
    gray = np.asarray(image.convert("L"), dtype=np.float32) / 255
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    return np.clip(paper - gray, 0, None) if paper > 0.5 else np.clip(gray - paper, 0, None)


def to_mnist(image: Image.Image, normalization: Normalization = MNIST_NORMALIZATION) -> torch.Tensor:
    """One digit, any size and mode -> (1, 28, 28) float32, normalized with a training split's
    (mean, std): MNIST's unless told."""
    page = ink(image)
    if page.max() <= 0.05:
        raise MnistCnnError("no digit found: the image is blank")
    page = page / page.max()
    rows, cols = np.nonzero(page > INK_THRESHOLD)
    digit = torch.from_numpy(page[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].copy())

    height, width = digit.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    digit = F.interpolate(digit[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[
        0, 0
    ]
    digit = digit.clamp(0, 1)

    # Place the digit so that its centre of mass is at the field's centre.
    ys, xs = torch.arange(size[0], dtype=torch.float32), torch.arange(size[1], dtype=torch.float32)
    mass = digit.sum()
    cy, cx = float((digit.sum(1) * ys).sum() / mass), float((digit.sum(0) * xs).sum() / mass)
    top = min(max(round(FIELD / 2 - 0.5 - cy), 0), FIELD - size[0])
    left = min(max(round(FIELD / 2 - 0.5 - cx), 0), FIELD - size[1])
    field = torch.zeros(FIELD, FIELD)
    field[top : top + size[0], left : left + size[1]] = digit
    return normalize(field * 255, normalization)[None]


def image_files(paths: list[str | os.PathLike]) -> list[Path]:
    """The files named, with each folder replaced by the image files in it (sorted by name)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files
