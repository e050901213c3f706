import pytest
import torch

from mnist_cnn import load_model
from mnist_cnn.export import export_model

from .test_cli import assert_one_line_error, run


def batches():
    torch.manual_seed(0)
    return [torch.randn(5, 1, 28, 28), torch.randn(64, 1, 28, 28)]  # the batch size is dynamic


def test_torchscript_matches_pytorch(checkpoint, tmp_path):
    model = load_model(checkpoint)
    export_model(model, "torchscript", tmp_path / "net.ts")
    scripted = torch.jit.load(str(tmp_path / "net.ts"))
    for x in batches():
        assert torch.allclose(scripted(x), model(x), atol=1e-4)


def test_onnx_matches_pytorch(checkpoint, tmp_path):
    ort = pytest.importorskip(
        "onnxruntime", reason="onnxruntime is not installed (pip install mnist-cnn[export])"
    )
    model = load_model(checkpoint)
    export_model(model, "onnx", tmp_path / "net.onnx")
    session = ort.InferenceSession(str(tmp_path / "net.onnx"))
    for x in batches():
        (out,) = session.run(None, {"images": x.numpy()})
        assert torch.allclose(torch.from_numpy(out), model(x), atol=1e-4)


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
    assert (tmp_path / "m.ts").stat().st_size > 0
    assert_one_line_error(
        run(str(checkpoint), "--format", "tflite", "--output", "x", module="mnist_cnn.export"), "--format"
    )
