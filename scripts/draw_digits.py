"""Draw digits as a user's scans and photos might show them, for trying `mnist_cnn.predict`.

    python scripts/draw_digits.py docs/digits

Each digit is typeset with Pillow's built-in font (not handwriting: MNIST's nets read it less
surely), at a different size and aspect, dark on light paper or light on dark, as PNG and JPEG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def draw_digit(digit: int, size: tuple[int, int], dark_on_light: bool) -> Image.Image:
    paper, ink = (235, 30) if dark_on_light else (15, 230)
    image = Image.new("L", size, paper)
    font = ImageFont.load_default(size=int(min(size) * 0.7))
    ImageDraw.Draw(image).text((size[0] / 2, size[1] / 2), str(digit), fill=ink, font=font, anchor="mm")
    return image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    folder = p.parse_args().folder
    folder.mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        size = (90 + 17 * digit, 140 - 5 * digit)
        image = draw_digit(digit, size, dark_on_light=digit % 2 == 0).convert("RGB")
        image.save(folder / f"{digit}.{'jpg' if digit % 3 == 0 else 'png'}")


if __name__ == "__main__":
    main()
