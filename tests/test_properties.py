"""Property-based tests: whatever picture or file a user hands over, the answer is a sane result
or a clear error, never a crash or a hang."""

from __future__ import annotations

import io

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mnist_cnn import MnistCnnError, Net, load_checkpoint, save_checkpoint
from mnist_cnn.preprocess import load_image, to_mnist

MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "I", "F", "I;16", "CMYK", "YCbCr"]


@st.composite
def images(draw) -> Image.Image:
    """Any mode and size, any pixels: noise, flat fields, or a few strokes."""
    mode = draw(st.sampled_from(MODES))
    size = (draw(st.integers(1, 96)), draw(st.integers(1, 96)))
    length = len(Image.new(mode, size).tobytes())
    fill = draw(st.sampled_from(["noise", "flat", "strokes"]))
    if fill == "noise":
        data = draw(st.binary(min_size=length, max_size=length))
    else:
        data = bytes([draw(st.integers(0, 255))]) * length
    image = Image.frombytes(mode, size, data)
    if fill == "strokes" and mode in ("L", "RGB", "RGBA"):
        from PIL import ImageDraw

        pen = ImageDraw.Draw(image)
        for _ in range(draw(st.integers(1, 4))):
            box = [draw(st.integers(0, size[0])), draw(st.integers(0, size[1]))]
            pen.line(
                box + [draw(st.integers(0, size[0])), draw(st.integers(0, size[1]))],
                fill=255 - data[0],
                width=2,
            )
    return image


def assert_mnist_form_or_clear_error(image: Image.Image) -> None:
    try:
        tensor = to_mnist(image)
    except MnistCnnError as error:
        assert str(error) and "\n" not in str(error)
        return
    assert tensor.shape == (1, 28, 28) and tensor.dtype == torch.float32
    assert torch.isfinite(tensor).all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images())
def test_any_image_becomes_the_mnist_form_or_a_clear_error(image):
    assert_mnist_form_or_clear_error(image)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images(), st.sampled_from(["PNG", "BMP", "TIFF", "GIF", "JPEG"]), st.data())
def test_any_saved_or_damaged_file_loads_or_is_a_clear_error(tmp_path_factory, image, fmt, data):
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        return  # Pillow cannot write this mode in this format: nothing for a user to hand over
    content = buffer.getvalue()
    cut = data.draw(st.integers(0, len(content)))  # whole, or truncated anywhere
    path = tmp_path_factory.mktemp("img") / f"x.{fmt.lower()}"
    path.write_bytes(content[:cut])
    try:
        loaded = load_image(path)
    except MnistCnnError as error:
        assert str(path) in str(error) and "\n" not in str(error)
        return
    assert_mnist_form_or_clear_error(loaded)


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "c.pt"
    save_checkpoint(path, {"model": "seed", "model_state": Net().state_dict(), "epoch": 1})
    return path.read_bytes()


@settings(max_examples=100, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=4096))
def test_random_bytes_are_never_a_checkpoint(tmp_path, content):
    path = tmp_path / "random.pt"
    path.write_bytes(content)
    with pytest.raises(MnistCnnError, match="random.pt"):
        load_checkpoint(path)


@settings(max_examples=100, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_damaged_checkpoints_load_whole_or_are_a_clear_error(tmp_path, checkpoint_bytes, data):
    content = bytearray(checkpoint_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        content[data.draw(st.integers(0, len(content) - 1))] = data.draw(st.integers(0, 255))
    content = content[: data.draw(st.integers(1, len(content)))]
    path = tmp_path / "damaged.pt"
    path.write_bytes(bytes(content))
    try:
        checkpoint = load_checkpoint(path)
    except MnistCnnError as error:
        assert "damaged.pt" in str(error) and "\n" not in str(error)
        return
    assert "model_state" in checkpoint  # a flip in padding or data may leave a loadable file
