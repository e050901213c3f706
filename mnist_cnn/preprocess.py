"""Any picture of one digit -> the MNIST form: 1x28x28, light digit on black, normalized.

MNIST was made by scaling each digit to fit a 20x20 box, keeping its aspect ratio, and placing
it in a 28x28 field so that its centre of mass is at the centre. We do the same, after turning
the picture gray, making the ink light on a dark background, and cropping to the ink. MNIST's
strokes are full-strength and about 2 pixels wide, so a digit drawn with a pen too thin for the
picture's size (it would fade away when scaled down) is thickened first, and the ink of every
digit is scaled to full strength.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
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
# Stroke widths in pixels once scaled to the digit box, as stroke_width measures them: MNIST's are
# 1.6-2.2 for half of its digits (median 1.85); about 1 in 5 is thinner than MIN_STROKE.
MIN_STROKE = 1.5  # thinner strokes are thickened ...
TARGET_STROKE = 2.0  # ... to this
IMAGE_SUFFIXES = {suffix for suffix, _ in Image.registered_extensions().items()}
# The decoders an upload to the server may reach (load_digit's formats): the common ones, where
# Pillow's rarer decoders are less tried against hostile files.
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")


def load_image(
    source: str | os.PathLike | bytes,
    name: str | None = None,
    max_pixels: int | None = None,
    formats: tuple[str, ...] | None = None,
) -> Image.Image:
    """Open and decode an image (its first frame): a file, or the bytes of one (an upload); an
    image that is not whole and sane is an MnistCnnError starting with name (by default the
    path, or "the image"). info["frames"] says how many frames it holds (an animated GIF: several).

    max_pixels refuses bigger images before any pixel is decoded (Pillow's own limit is about
    89 Mpixel); formats limits the decoders tried (Pillow's names: "PNG", "JPEG", ...).
    """
    label = image_name(source, name)
    try:
        with pillow_warnings():
            opened = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
            with Image.open(opened, formats=formats) as image:
                # Image.open has read the header only: refuse a huge image before decoding it.
                if max_pixels is not None and image.width * image.height > max_pixels:
                    raise MnistCnnError(
                        f"{label}: {image.width}x{image.height} is too many pixels (at most "
                        f"{max_pixels:,}; a possible decompression bomb)"
                    )
                if slow_to_decode(image):
                    raise MnistCnnError(
                        f"{label}: {image.width}x{image.height} is too many pixels for a "
                        f"run-length-encoded BMP (at most {SLOW_DECODER_PIXELS:,})"
                    )
                image.load()
                copy = image.copy()
                copy.info["frames"] = getattr(image, "n_frames", 1)
                return copy
    except MnistCnnError:
        raise
    except FileNotFoundError:
        raise MnistCnnError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise MnistCnnError(f"{label}: is a folder, not an image") from None
    except UnidentifiedImageError:
        if formats:
            raise MnistCnnError(f"{label}: not an image in one of the formats {', '.join(formats)}") from None
        raise MnistCnnError(f"{label}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MnistCnnError(f"{label}: too many pixels (a possible decompression bomb)") from None
    except Exception as error:  # decoders fail in many ways on damaged files
        raise MnistCnnError(f"{label}: truncated or corrupt image ({first_line(error)})") from None


# Pillow decodes run-length-encoded BMPs in Python, a pixel at a time: about 0.15 microseconds a
# pixel, whatever the file holds, so 100 bytes claiming 25 Mpixel cost seconds (found by
# scripts/fuzz_images.py). Such files are small palette graphics; bigger ones are refused.
SLOW_DECODER_PIXELS = 1_000_000


def slow_to_decode(image: Image.Image) -> bool:
    """Whether image (opened, not yet decoded) is too big for the slow decoder it would need."""
    slow = any(tile[0] == "bmp_rle" for tile in getattr(image, "tile", []))
    return slow and image.width * image.height > SLOW_DECODER_PIXELS


# warnings.catch_warnings changes the filters of the whole process: two threads inside it at once
# (the server's workers) would leave each other's filters in place for good. One at a time.
_WARNINGS_LOCK = threading.Lock()


@contextlib.contextmanager
def pillow_warnings() -> Iterator[None]:
    """While Pillow reads an image: its warnings about damaged metadata ("Corrupt EXIF data") are
    not the user's business (the pixels still load, or decoding fails with one clear line), and
    its warning between its two size limits is taken for the decompression bomb it may be."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def image_name(source: str | os.PathLike | bytes, name: str | None = None) -> str:
    """What error messages call an image: name, else its path, else "the image" (bytes)."""
    return name or ("the image" if isinstance(source, bytes) else str(Path(source)))


def ink(image: Image.Image) -> np.ndarray:
    """The image as float32 ink in [0, 1] (1: the most ink) on a zero background.

    Transparency, when the picture has any, is the ink: a digit drawn on a clear background.
    Otherwise gray levels are used, inverted when the border (the paper) is lighter than mid-gray.
    """
    try:
        with pillow_warnings():
            image = ImageOps.exif_transpose(image)  # a phone photo's "this side up"
    except Exception:  # a damaged EXIF block: read the picture as it lies
        pass
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA").getchannel("A"), dtype=np.float32) / 255
        if alpha.min() < 1:
            return alpha
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        gray = own_range(np.asarray(image))
    else:
        gray = np.asarray(image.convert("L"), dtype=np.float32) / 255
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    page = paper - gray if paper > 0.5 else gray - paper
    return np.maximum(page, 0, out=page)  # in place: np.clip takes 3 times as long on a photo


def own_range(values: np.ndarray) -> np.ndarray:
    """16-bit, 32-bit and float pixels as float32 in [0, 1], from their smallest to their largest:
    such images use any range (ink at 8000 on paper at 60000, or 0..1), which Pillow's 8-bit
    conversion would clip. Values that are not finite (NaN, inf) are taken for paper: the median."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.float32)
    values = np.where(finite, values, np.median(values[finite])).astype(np.float64)  # no overflow
    low, high = values.min(), values.max()
    return ((values - low) / (high - low) if high > low else np.zeros_like(values)).astype(np.float32)


def stroke_width(ink: np.ndarray | torch.Tensor) -> float:
    """The mean width in pixels of the strokes in ink (scaled to a maximum of 1): twice the area of
    its binarized ink over its perimeter, as a long stroke of width w has area w*length and
    perimeter 2*length. Pixel steps make diagonal strokes read up to about 1.4 times thinner."""
    mask = np.pad(np.asarray(ink) > 0.5, 1)
    edges = np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
    return 2 * np.count_nonzero(mask) / edges if edges else 0.0


def thicken(digit: torch.Tensor) -> torch.Tensor:
    """A cropped digit (2-D, ink in [0, 1]) with its strokes grown (and its borders widened to
    make room), so that once scaled to the digit box they are about TARGET_STROKE pixels wide."""
    # Max-pool big pictures down to 4-8 times the box first: it keeps a thin stroke whole (averaging
    # would fade it), and growing strokes at that size is cheap and fine enough.
    factor = max(1, max(digit.shape) // (4 * DIGIT_BOX))
    digit = F.max_pool2d(digit[None, None], factor, ceil_mode=True) if factor > 1 else digit[None, None]
    # n steps add 2n pixels to each stroke and to the digit's longer side L; solve
    # (width + 2n) * DIGIT_BOX / (L + 2n) = TARGET_STROKE for n.
    long, width = max(digit.shape[2:]), stroke_width(digit[0, 0])
    steps = round((TARGET_STROKE * long - DIGIT_BOX * width) / (2 * (DIGIT_BOX - TARGET_STROKE)))
    digit = F.pad(digit, (max(steps, 0),) * 4)
    for step in range(steps):
        # Alternate a 3x3 square and a cross: together they grow strokes of any slant about alike.
        if step % 2 == 0:
            digit = F.max_pool2d(digit, 3, stride=1, padding=1)
        else:
            digit = torch.maximum(
                F.max_pool2d(digit, (3, 1), stride=1, padding=(1, 0)),
                F.max_pool2d(digit, (1, 3), stride=1, padding=(0, 1)),
            )
    return digit[0, 0]


def to_mnist(image: Image.Image, normalization: Normalization = MNIST_NORMALIZATION) -> torch.Tensor:
    """One digit, any size and mode -> (1, 28, 28) float32, normalized with a training split's
    (mean, std): MNIST's unless told."""
    page = ink(image)
    if page.max() <= 0.05:
        raise MnistCnnError("no digit found: the image is blank")
    page = page / page.max()
    inked = page > INK_THRESHOLD
    rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))  # the ink's box
    digit = torch.from_numpy(page[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy())
    if stroke_width(digit) * DIGIT_BOX / max(digit.shape) < MIN_STROKE:
        digit = thicken(digit)

    height, width = digit.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    digit = F.interpolate(digit[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[
        0, 0
    ]
    digit = digit.clamp(0, 1)
    digit = digit / digit.max()  # full-strength ink, as in MNIST, however faint after scaling

    # Place the digit so that its centre of mass is at the field's centre.
    ys, xs = torch.arange(size[0], dtype=torch.float32), torch.arange(size[1], dtype=torch.float32)
    mass = digit.sum()
    cy, cx = float((digit.sum(1) * ys).sum() / mass), float((digit.sum(0) * xs).sum() / mass)
    top = min(max(round(FIELD / 2 - 0.5 - cy), 0), FIELD - size[0])
    left = min(max(round(FIELD / 2 - 0.5 - cx), 0), FIELD - size[1])
    field = torch.zeros(FIELD, FIELD)
    field[top : top + size[0], left : left + size[1]] = digit
    return normalize(field * 255, normalization)[None]


def load_digit(
    source: str | os.PathLike | bytes,
    normalization: Normalization = MNIST_NORMALIZATION,
    name: str | None = None,
    max_pixels: int | None = None,
    formats: tuple[str, ...] | None = None,
) -> tuple[Image.Image, torch.Tensor]:
    """load_image, then to_mnist: the picture as decoded (its info["frames"] for notes) and the
    (1, 28, 28) tensor the net reads. Every MnistCnnError starts with the image's name, as
    load_image's do ("7.png: no digit found: the image is blank"): to_mnist's own messages do not
    name it, as it is given pixels, not a file."""
    picture = load_image(source, name, max_pixels, formats)
    try:
        return picture, to_mnist(picture, normalization)
    except MnistCnnError as error:
        raise MnistCnnError(f"{image_name(source, name)}: {error}") from None
    except Exception as error:  # a mode Pillow decodes but cannot convert (a LAB TIFF, ...)
        raise MnistCnnError(
            f"{image_name(source, name)}: cannot read its pixels ({first_line(error)})"
        ) from None


def to_pixels(image: torch.Tensor, normalization: Normalization = MNIST_NORMALIZATION) -> np.ndarray:
    """What to_mnist made, (1, 28, 28) normalized, back to the 28x28 uint8 picture the net sees:
    light ink on black, as MNIST's own images are."""
    mean, std = normalization
    field = image[0].detach().cpu().float() * std + mean  # 0..1
    return field.mul(255).round().clamp(0, 255).to(torch.uint8).numpy()


def image_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The files named, with each folder replaced by the image files in it (sorted by name), leaving
    out hidden ones (".name": macOS's "._name" companions are no images)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            files.append(path)
    return files
