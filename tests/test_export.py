import json
import sys

import pytest
import torch

from mnist_cnn.checkpoint import load_trained
from mnist_cnn.data import DATASETS
from mnist_cnn.exporters import METADATA_FILE, export_model

from .helpers import EXPORT, assert_one_line_error, run, run_main


def batches():
    torch.manual_seed(0)
    # The batch size is dynamic, and so are height and width (at least 28: the net is fully convolutional).
    return [torch.randn(5, 1, 28, 28), torch.randn(64, 1, 28, 28), torch.randn(3, 1, 40, 36)]


def expected_metadata(trained):
    mean, std = trained.normalization
    return {"dataset": "mnist", "classes": list(DATASETS["mnist"].classes), "mean": mean, "std": std}


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_matches_pytorch_and_carries_the_metadata(checkpoint, tmp_path):
    trained = load_trained(checkpoint)
    export_model(trained, "torchscript", tmp_path / "net.ts")
    extra = {METADATA_FILE: ""}
    scripted = torch.jit.load(str(tmp_path / "net.ts"), _extra_files=extra)
    assert json.loads(extra[METADATA_FILE]) == expected_metadata(trained)
    for x in batches():
        assert torch.allclose(scripted(x), trained.model(x), atol=1e-4)


def test_onnx_matches_pytorch_and_carries_the_metadata(checkpoint, tmp_path):
    ort = pytest.importorskip(
        "onnxruntime", reason="onnxruntime is not installed (pip install mnist-cnn[export])"
    )
    trained = load_trained(checkpoint)
    export_model(trained, "onnx", tmp_path / "net.onnx")
    session = ort.InferenceSession(str(tmp_path / "net.onnx"))
    for x in batches():
        (out,) = session.run(None, {"images": x.numpy()})
        assert torch.allclose(torch.from_numpy(out), trained.model(x), atol=1e-4)
    props = session.get_modelmeta().custom_metadata_map
    expected = expected_metadata(trained)
    assert props["dataset"] == expected["dataset"]
    assert json.loads(props["classes"]) == expected["classes"]
    assert (float(props["mean"]), float(props["std"])) == trained.normalization


@pytest.mark.slow
def test_export_command_line(checkpoint, tmp_path):
    result = run(
        str(checkpoint),
        "--format",
        "torchscript",
        "--output",
        str(tmp_path / "m.ts"),
        module="mnist_cnn.export",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no exporter warnings for the user
    assert "(N, 1, H, W) with H, W >= 28" in result.stdout
    assert (tmp_path / "m.ts").stat().st_size > 0
    assert_one_line_error(
        run(str(checkpoint), "--format", "tflite", "--output", "x", module="mnist_cnn.export"), "--format"
    )


def test_onnx_without_the_onnx_package_says_which_extra_to_install(checkpoint, tmp_path, monkeypatch, capfd):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` fails, as when it is not installed
    output = tmp_path / "net.onnx"
    result = run_main(EXPORT, [str(checkpoint), "--format", "onnx", "--output", str(output)], capfd)
    assert_one_line_error(result, "--format onnx", 'pip install "mnist-cnn[export]"')
    assert not output.exists()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_an_output_that_cannot_be_written_is_one_line(checkpoint, tmp_path, capfd, fmt, where):
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    output = tmp_path / "file.txt" / "net" if where == "under a file" else tmp_path / "folder"
    result = run_main(EXPORT, [str(checkpoint), "--format", fmt, "--output", str(output)], capfd)
    assert_one_line_error(result, f"cannot write {output}")
    assert result.stdout == ""
