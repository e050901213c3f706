"""explain: every layer's output named as torchsummary names it, class activation maps that agree
with the prediction, Grad-CAM, the picture, and the command line's one-line errors."""

import re
import sys
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mnist_cnn.cam import (
    class_activation_maps,
    explain,
    feature_maps,
    global_pool,
    grad_cam,
    predicted_class_map,
)
from mnist_cnn.model import build_model
from mnist_cnn.weights import WEIGHTS, WEIGHTS_DIR

from .helpers import HEAVY, TRAINING, assert_one_line_error, imported_by, run, run_main

REPO = Path(__file__).resolve().parents[1]
FOUR = REPO / "docs" / "digits" / "4.png"  # both shipped MNIST nets read it right, at 100%
EXPLAIN = "mnist_cnn.explain"
# Each net's class maps: 2x2 for the seed net on 28x28 inputs, 3x3 for the improved net (its first
# two convolutions are padded); both shrink a side by 4 per cell, so a 56x56 input gives 9x9, 10x10.
CLASS_MAP_SIDE = {("seed", 28): 2, ("seed", 56): 9, ("improved", 28): 3, ("improved", 56): 10}
LAST_3X3 = {"seed": "Conv2d-11", "improved": "Conv2d-17"}  # the last 3x3 convolution, by name
BEFORE_1X1 = {"seed": "ReLU-12", "improved": "ReLU-19"}  # the input of the 1x1 convolution


def summary_rows(table: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape without the batch) of each layer in a torchsummary table."""
    rows = re.findall(r"^\s*(\w+-\d+)\s+\[-1, ([\d, ]+)\]", table, flags=re.MULTILINE)
    return [(name, tuple(int(n) for n in shape.split(", "))) for name, shape in rows]


def shapes(maps: dict[str, torch.Tensor]) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(output.shape)) for name, output in maps.items()]


def trained(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """A shipped MNIST net and the 28x28 four, as the net expects it."""
    weights = WEIGHTS[name].DEFAULT
    return weights.load().model, weights.transforms()(FOUR)


def padded(image: torch.Tensor, side: int) -> torch.Tensor:
    """image (1, 28, 28) in the middle of a side x side field of its background."""
    margin = (side - 28) // 2
    return F.pad(image, (margin, side - 28 - margin) * 2, value=float(image.min()))


def test_the_seed_nets_layers_are_named_and_shaped_as_in_its_summary():
    maps = feature_maps(build_model("seed"), torch.randn(1, 28, 28))
    assert shapes(maps) == summary_rows((Path(__file__).with_name("seed_summary.txt")).read_text())


@pytest.mark.parametrize("name", ["seed", "improved"])
@pytest.mark.parametrize("side", [28, 56])
def test_feature_maps_are_named_and_shaped_as_torchsummary_prints_them(name, side, capsys):
    summary = pytest.importorskip("torchsummary").summary
    model = build_model(name)
    with torch.random.fork_rng(devices=[]):
        summary(model, (1, side, side), device="cpu")
    expected = summary_rows(capsys.readouterr().out)
    assert len(expected) == len(list(model.features))  # every layer, once
    assert shapes(feature_maps(model, torch.randn(1, side, side))) == expected


def test_feature_maps_keep_each_layers_own_output():
    """The in-place ReLU after a convolution must not overwrite the convolution's recorded output."""
    model, image = build_model("seed"), torch.randn(1, 28, 28)
    maps = feature_maps(model, image)
    with torch.no_grad():
        first = model.features[0](image[None])[0]
    torch.testing.assert_close(maps["Conv2d-1"], first)
    assert (maps["Conv2d-1"] < 0).any() and torch.equal(maps["ReLU-2"], first.clamp(min=0))


@pytest.mark.parametrize("name", ["seed", "improved"])
@pytest.mark.parametrize("side", [28, 56])
def test_class_maps_have_the_shapes_of_the_layer_before_pooling(name, side):
    model, image = build_model(name), torch.randn(1, side, side)
    cams = class_activation_maps(model, image)
    k = CLASS_MAP_SIDE[name, side]
    assert cams.maps.shape == (10, k, k) and cams.log_probs.shape == (10,) and cams.size == (side, side)
    assert torch.equal(cams.maps, list(feature_maps(model, image).values())[-2])  # the 1x1 convolution's
    for index in (cams.predicted, cams.ranked()[-1]):
        stretched = cams.upsampled(index)
        assert stretched.shape == (side, side)
        # Bilinear stretching only mixes neighbouring cells: nothing beyond the map's own range.
        low, high = float(cams.maps[index].min()), float(cams.maps[index].max())
        assert low - 1e-5 <= stretched.min() <= stretched.max() <= high + 1e-5


@pytest.mark.parametrize("name", ["seed", "improved"])
@pytest.mark.parametrize("side", [28, 56])
def test_the_class_maps_agree_with_the_prediction(name, side):
    """The nets end: 1x1 convolution -> class maps (10, h, w); AdaptiveAvgPool2d -> logits (10,);
    forward() -> log_softmax(logits). So each class map's mean (cams.scores) must equal the logit the
    net computes (model.features(x), everything before log_softmax), and log_softmax of those means
    the net's output, both up to float error; the predicted class is the one whose map has the
    largest mean."""
    model, image = trained(name)
    image = padded(image, side)
    cams = class_activation_maps(model, image)
    with torch.no_grad():
        logits = model.features(image[None]).flatten()
        log_probs = model(image[None])[0]
    torch.testing.assert_close(cams.scores, logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(cams.scores.log_softmax(0), log_probs, rtol=0, atol=1e-4)
    torch.testing.assert_close(cams.log_probs, log_probs)
    assert cams.predicted == int(log_probs.argmax()) == int(cams.scores.argmax())
    assert cams.ranked()[0] == cams.predicted and sorted(cams.ranked()) == list(range(10))
    if side == 28:  # on a 56x56 field most cells see only background, and the nets read other digits
        assert cams.predicted == 4


def test_explaining_leaves_the_model_as_it_was_and_uses_eval_mode():
    model, image = build_model("improved").train(), torch.randn(1, 28, 28)
    first = class_activation_maps(model, image)
    assert model.training  # put back
    assert torch.equal(first.maps, class_activation_maps(model, image).maps)  # no Dropout: eval mode
    grad_cam(model, image)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_the_predicted_class_map_is_28x28_numbers_for_the_drawing_page():
    model, image = trained("improved")
    best = predicted_class_map(model, image)
    assert best.index == 4 and 0.99 < best.probability <= 1
    assert best.map.shape == (28, 28) and best.map.dtype == torch.float32
    values = best.map.tolist()
    assert len(values) == 28 and all(len(row) == 28 and all(type(v) is float for v in row) for row in values)
    cams = class_activation_maps(model, image)
    torch.testing.assert_close(best.map, cams.upsampled(4))
    assert torch.equal(best.coarse, cams.maps[4]) and best.coarse.shape == (3, 3)
    assert torch.equal(best.scores, cams.scores)
    assert float(best.coarse.mean()) == pytest.approx(float(best.scores[4]), abs=1e-5)  # the 4's score


def run_another_thread_midway(model: torch.nn.Module, layer: torch.nn.Module, image: torch.Tensor):
    """A forward hook on layer that, the first time it runs, runs model on image in another thread
    and waits for it: as a server's worker would, sharing the net, in the middle of this pass."""
    done = []

    def meanwhile(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not done:
            done.append(True)
            other = threading.Thread(target=lambda: model(image[None]))
            other.start()
            other.join()

    return layer.register_forward_hook(meanwhile)


def test_the_maps_are_of_this_threads_image_while_another_thread_runs_the_net():
    """The hooks listen to the thread that set them only: the server's workers share one net."""
    model, four = trained("seed")
    other = torch.randn(1, 28, 28)
    tensors = {
        "class maps": lambda: {"maps": class_activation_maps(model, four).maps},
        "feature maps": lambda: feature_maps(model, four),
        "grad-cam": lambda: {"cam": grad_cam(model, four)},
    }
    for what, compute in tensors.items():
        alone = compute()
        for layer in (model.features[0], global_pool(model)):
            handle = run_another_thread_midway(model, layer, other)
            try:
                meanwhile = compute()
            finally:
                handle.remove()
            assert list(meanwhile) == list(alone), what
            assert all(torch.equal(meanwhile[k], alone[k]) for k in alone), what


@pytest.mark.parametrize("name", ["seed", "improved"])
@pytest.mark.parametrize("side", [28, 56])
def test_grad_cam_is_a_rectified_map_of_the_last_3x3_convolutions_size(name, side):
    model, image = trained(name)
    image = padded(image, side)
    k = CLASS_MAP_SIDE[name, side]  # no layer after the last 3x3 convolution changes the size
    assert tuple(feature_maps(model, image)[LAST_3X3[name]].shape[1:]) == (k, k)
    for target in (None, 4, 7):
        cam = grad_cam(model, image, target)
        assert cam.shape == (k, k) and torch.isfinite(cam).all() and (cam >= 0).all()
    predicted = class_activation_maps(model, image).predicted
    assert torch.equal(grad_cam(model, image), grad_cam(model, image, predicted, LAST_3X3[name]))
    if side == 28:  # the four, read at 100%: some of the last layer speaks for it
        assert grad_cam(model, image).max() > 0


@pytest.mark.parametrize("name", ["seed", "improved"])
def test_grad_cam_before_the_1x1_convolution_is_the_rectified_class_map(name):
    """Pooling is linear, so each channel's gradient there is the 1x1 weight over the cell count."""
    model, image = trained(name)
    maps = class_activation_maps(model, image).maps
    cells = maps[0].numel()
    for target in (4, 9):
        torch.testing.assert_close(
            grad_cam(model, image, target, BEFORE_1X1[name]), maps[target].clamp(min=0) / cells
        )


def test_grad_cam_at_an_earlier_layer_is_finer_and_a_wrong_name_lists_the_layers():
    model, image = trained("seed")
    assert grad_cam(model, image, layer="Conv2d-8").shape == (8, 8)
    with pytest.raises(ValueError, match="no layer 'Conv2d-99'; the layers are Conv2d-1, ReLU-2"):
        grad_cam(model, image, layer="Conv2d-99")


def test_one_image_is_what_the_functions_take():
    model = build_model("seed")
    assert class_activation_maps(model, torch.randn(1, 1, 28, 28)).maps.shape == (10, 2, 2)
    with pytest.raises(ValueError, match=r"expected one image of shape \(1, H, W\), got \(2, 1, 28, 28\)"):
        feature_maps(model, torch.randn(2, 1, 28, 28))


def test_explain_gathers_what_the_picture_shows():
    model, image = trained("seed")
    explanation = explain(model, image)
    assert explanation.image.shape == (1, 28, 28) and explanation.filters.shape == (8, 1, 3, 3)
    assert list(explanation.features)[0] == "Conv2d-1" and explanation.cams.predicted == 4


def assert_png(path: Path, min_size: tuple[int, int] = (800, 600)) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as picture:
        picture.verify()
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.width >= min_size[0] and picture.height >= min_size[1]


@pytest.mark.slow
def test_the_command_line_draws_the_picture(tmp_path):
    pytest.importorskip("matplotlib")
    output = tmp_path / "seed.png"
    result = run("--weights", "seed", str(FOUR), "--output", str(output), module=EXPLAIN)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Wrote {output}: 4 (100.0%), runner-up ") and result.stderr == ""
    assert_png(output)
    assert not [p for p in tmp_path.iterdir() if p.name != "seed.png"]  # no temporary file left


def test_with_no_net_given_the_shipped_improved_net_explains_and_says_so(tmp_path, capfd):
    pytest.importorskip("matplotlib")
    result = run_main(EXPLAIN, [str(FOUR), "--output", str(tmp_path / "new" / "x.png")], capfd)
    assert result.returncode == 0, result.stderr
    note = "note: no checkpoint given: reading with the shipped ImprovedNetWeights.MNIST_V2\n"
    assert result.stderr == note
    assert_png(tmp_path / "new" / "x.png")


def test_a_weights_file_is_taken_as_a_checkpoint(tmp_path, capfd):
    pytest.importorskip("matplotlib")
    weights = WEIGHTS_DIR / "improved-fashion-mnist-v1.safetensors"
    result = run_main(EXPLAIN, [str(weights), str(FOUR), "--output", str(tmp_path / "x.png")], capfd)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith(f"Wrote {tmp_path / 'x.png'}: ")  # class names, not digits
    assert_png(tmp_path / "x.png")


def blank(tmp: Path) -> str:
    Image.new("L", (40, 40), 255).save(tmp / "blank.png")
    return str(tmp / "blank.png")


def not_a_folder(tmp: Path) -> str:
    (tmp / "file.txt").write_text("a file, not a folder")
    return str(tmp / "file.txt" / "out.png")


BAD_INPUTS = {  # the arguments, and what the one line must say
    "missing image": (lambda tmp: ["--weights", "seed", str(tmp / "nope.png"), "--output", str(tmp / "o.png")], "nope.png: no such file"),
    "blank image": (lambda tmp: ["--weights", "seed", blank(tmp), "--output", str(tmp / "o.png")], "blank.png: no digit found"),
    "two images": (lambda tmp: ["--weights", "seed", str(FOUR), str(FOUR), "--output", str(tmp / "o.png")], "give one image"),
    "checkpoint only": (lambda tmp: [str(tmp / "best.pt"), "--output", str(tmp / "o.png")], "no images given after the checkpoint"),
    "bad checkpoint": (lambda tmp: [bad_checkpoint(tmp), str(FOUR), "--output", str(tmp / "o.png")], "not a readable checkpoint"),
    "missing checkpoint": (lambda tmp: [str(tmp / "gone.pt"), str(FOUR), "--output", str(tmp / "o.png")], "gone.pt does not exist"),
    "unknown weights": (lambda tmp: ["--weights", "nope", str(FOUR), "--output", str(tmp / "o.png")], "--weights 'nope'"),
    "checkpoint and weights": (lambda tmp: [bad_checkpoint(tmp), str(FOUR), "--weights", "seed", "--output", str(tmp / "o.png")], "not both"),
    "other data set": (lambda tmp: ["--weights", "seed", "--dataset", "kmnist", str(FOUR), "--output", str(tmp / "o.png")], "kmnist"),
    "output folder": (lambda tmp: ["--weights", "seed", str(FOUR), "--output", not_a_folder(tmp)], "cannot write"),
    "output not png": (lambda tmp: ["--weights", "seed", str(FOUR), "--output", str(tmp / "o.jpg")], "--output must name a .png file"),
    "no output": (lambda tmp: ["--weights", "seed", str(FOUR)], "--output"),
    "bad flag": (lambda tmp: ["--weights", "seed", str(FOUR), "--output", str(tmp / "o.png"), "--bogus"], "--bogus"),
}  # fmt: skip


def bad_checkpoint(tmp: Path) -> str:
    (tmp / "model.pt").write_bytes(b"not a checkpoint")
    return str(tmp / "model.pt")


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_status_2(case, tmp_path, capfd):
    make, needle = BAD_INPUTS[case]
    result = run_main(EXPLAIN, make(tmp_path), capfd)
    assert_one_line_error(result, needle)
    assert result.stdout == "" and not list(tmp_path.glob("*.png.*"))  # nothing half-written


def test_without_matplotlib_the_command_is_one_line(tmp_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    result = run_main(EXPLAIN, ["--weights", "seed", str(FOUR), "--output", str(tmp_path / "o.png")], capfd)
    assert_one_line_error(result, "matplotlib is not installed")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.slow
def test_the_real_command_line_gives_the_same_one_line(tmp_path):
    result = run("--weights", "seed", str(tmp_path / "nope.png"), "--output", "o.png", module=EXPLAIN)
    assert_one_line_error(result, "nope.png: no such file")


@pytest.mark.slow
def test_explain_imports_no_training_machinery():
    added = imported_by("mnist_cnn.explain")
    assert "mnist_cnn.explain" in added
    assert not added & (TRAINING | HEAVY), sorted(added & (TRAINING | HEAVY))
