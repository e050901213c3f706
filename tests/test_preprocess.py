import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_cnn import MnistCnnError
from mnist_cnn.preprocess import image_files, load_image, to_mnist

from .helpers import ink_of, render_digit


def test_a_dark_digit_on_light_paper_becomes_the_mnist_form():
    out = to_mnist(render_digit("7", (120, 160)))
    assert out.shape == (1, 28, 28) and out.dtype == torch.float32 and torch.isfinite(out).all()
    ink = ink_of(out)
    assert ink.max() == pytest.approx(1.0, abs=0.02)  # light digit ...
    assert ink[0].max() < 0.05 and ink[:, 0].max() < 0.05  # ... on black
    rows, cols = torch.nonzero(ink > 0.2, as_tuple=True)
    longer = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    assert 18 <= longer <= 20  # scaled to fit MNIST's 20-pixel box
    ys = torch.arange(28.0)
    cy = float((ink.sum(1) * ys).sum() / ink.sum())
    cx = float((ink.sum(0) * ys).sum() / ink.sum())
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1  # centred by its centre of mass


@pytest.mark.parametrize(
    "variant",
    [
        {"dark_on_light": False},
        {"size": (400, 300)},
        {"size": (60, 60)},
        {"mode": "RGB"},
        {"mode": "1"},
        {"mode": "P"},
    ],
)
def test_polarity_size_and_mode_do_not_matter(variant):
    reference = to_mnist(render_digit("4", (200, 200)))
    other = to_mnist(render_digit("4", **{"size": (200, 200), **variant}))
    assert (
        torch.nn.functional.cosine_similarity(ink_of(reference).flatten(), ink_of(other).flatten(), dim=0)
        > 0.85
    )


def test_transparency_is_the_ink():
    gray = render_digit("3", (100, 100))
    clear = Image.new("RGBA", gray.size, (255, 255, 255, 0))
    clear.putalpha(Image.eval(gray, lambda v: 255 - v))  # opaque strokes on a clear background
    a, b = to_mnist(gray), to_mnist(clear)
    assert torch.nn.functional.cosine_similarity(ink_of(a).flatten(), ink_of(b).flatten(), dim=0) > 0.9


def test_a_blank_image_is_a_clear_error():
    with pytest.raises(MnistCnnError, match="blank"):
        to_mnist(Image.new("L", (50, 50), 200))


def save(image: Image.Image, path, fmt="PNG"):
    image.save(path, fmt)
    return path


def test_load_image_reads_formats_and_rejects_bad_files(tmp_path):
    digit = render_digit("5", (64, 64))
    for fmt, suffix in (("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("GIF", "gif")):
        assert to_mnist(load_image(save(digit, tmp_path / f"d.{suffix}", fmt))).shape == (1, 28, 28)
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(MnistCnnError, match="not an image"):
        load_image(tmp_path / "notes.png")
    whole = (tmp_path / "d.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(MnistCnnError, match="truncated or corrupt"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(MnistCnnError, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_decompression_bombs_are_refused(tmp_path):
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, "PNG")  # 144 Mpixel in a small file
    (tmp_path / "bomb.png").write_bytes(buffer.getvalue())
    with pytest.raises(MnistCnnError, match="decompression bomb"):
        load_image(tmp_path / "bomb.png")


def test_folders_expand_to_their_image_files(tmp_path):
    for name in ("b.png", "a.jpg"):
        save(render_digit(), tmp_path / name, "PNG" if name.endswith("png") else "JPEG")
    (tmp_path / "readme.txt").write_text("x")
    assert [p.name for p in image_files([tmp_path])] == ["a.jpg", "b.png"]
    assert image_files([tmp_path / "readme.txt"]) == [tmp_path / "readme.txt"]  # named files are kept


def test_random_noise_never_crashes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(1, 80, 2)
        image = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
        try:
            out = to_mnist(image)
        except MnistCnnError:
            continue
        assert out.shape == (1, 28, 28) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("dtype", "ink", "paper", "fmt", "mode"),
    [
        (np.uint16, 8000, 60000, "PNG", "I;16"),  # a 16-bit scan
        (np.int32, 300, 40000, "TIFF", "I"),
        (np.float32, 0.1, 0.9, "TIFF", "F"),  # a float picture, 0..1
    ],
)
def test_16_bit_and_float_images_are_scaled_by_their_own_range(tmp_path, dtype, ink, paper, fmt, mode):
    gray = render_digit("4", (80, 80))
    values = np.where(np.asarray(gray) < 128, ink, paper).astype(dtype)
    if dtype == np.float32:
        values[0, :3] = np.nan  # float pictures may hold NaN: taken for paper
    path = tmp_path / f"d.{fmt.lower()}"
    Image.fromarray(values).save(path, fmt)
    image = load_image(path)
    # The file really holds values beyond 8 bits (Pillow before 10.3 reads a 16-bit PNG as "I").
    assert image.mode.split(";")[0] == mode.split(";")[0]
    a, b = ink_of(to_mnist(gray)), ink_of(to_mnist(image))
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.9


def test_folders_leave_out_hidden_files_but_named_ones_are_read(tmp_path):
    save(render_digit(), tmp_path / "a.png")
    save(render_digit(), tmp_path / ".hidden.png")
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    assert image_files([tmp_path]) == [tmp_path / "a.png"]
    assert image_files([tmp_path / ".hidden.png"]) == [tmp_path / ".hidden.png"]


def test_load_image_counts_the_frames_of_an_animated_gif(tmp_path):
    frames = [render_digit(str(d), (60, 60)) for d in range(5)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    image = load_image(tmp_path / "anim.gif")
    assert image.info["frames"] == 5
    assert torch.equal(to_mnist(image), to_mnist(frames[0]))  # the first frame is the one read
    assert load_image(save(frames[0], tmp_path / "still.gif", "GIF")).info["frames"] == 1


# JPEG EXIF blocks that claim more tags than they hold: Pillow warns "Corrupt EXIF data" when the
# file is loaded, and again when its orientation is read.
CORRUPT_EXIF = [
    b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00",
    b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00",
]


@pytest.mark.parametrize("exif", CORRUPT_EXIF)
def test_pillow_warnings_about_damaged_files_do_not_reach_the_user(tmp_path, exif):
    render_digit("5", (64, 64)).save(tmp_path / "d.jpg", "JPEG", exif=exif)
    tiff = io.BytesIO()
    render_digit("5", (64, 64)).save(tiff, "TIFF")
    (tmp_path / "cut.tif").write_bytes(tiff.getvalue()[:10])  # the header, then half a tag count
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = Image.open(tmp_path / "d.jpg")  # not through load_image: to_mnist must be quiet too
        opened.load()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert to_mnist(load_image(tmp_path / "d.jpg")).shape == (1, 28, 28)
        assert to_mnist(opened).shape == (1, 28, 28)
        with pytest.raises(MnistCnnError, match="cut.tif"):
            load_image(tmp_path / "cut.tif")
    assert [str(w.message) for w in caught] == []


def test_threads_reading_images_at_once_leave_the_warning_filters_as_they_were(tmp_path):
    """The server's workers read images side by side; warnings.catch_warnings is process-wide, so
    overlapping ones would leave Pillow's 'ignore everything' filter behind for good."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from mnist_cnn.preprocess import load_digit

    from .helpers import render_digit

    path = tmp_path / "seven.png"
    render_digit("7").save(path)
    before = list(warnings.filters)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: load_digit(path), range(200)))
    assert warnings.filters == before
