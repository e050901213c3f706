import json
from pathlib import Path

import pytest
import torch

from mnist_cnn import Net
from mnist_cnn.evaluate import confusion_text, draw_pictures, evaluation_report

from .test_cli import assert_one_line_error, run
from .test_reliability import EVALUATE, run_main


def test_evaluation_report_counts_the_confusion_and_orders_the_mistakes():
    torch.manual_seed(0)
    net, images = Net().eval(), torch.randn(40, 1, 28, 28)
    with torch.no_grad():
        predicted = net(images).argmax(dim=1)
    labels = predicted.clone()
    labels[:6] = (labels[:6] + 3) % 10
    report = evaluation_report(net, images, labels, batch_size=16)
    assert (report["test_correct"], report["test_total"]) == (34, 40)
    confusion = torch.tensor(report["confusion"])
    assert confusion.sum() == 40 and confusion.diag().sum() == 34
    assert all(confusion[t, p] >= 1 for t, p in zip(labels[:6].tolist(), predicted[:6].tolist(), strict=True))
    assert sorted(m["index"] for m in report["mistakes"]) == list(range(6))
    probabilities = [m["probability"] for m in report["mistakes"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert confusion_text(report["confusion"]).count("\n") == 10


def test_evaluate_command_line_prints_and_draws(checkpoint, mnist_dir, tmp_path):
    args = [str(checkpoint), "--data-dir", str(mnist_dir), "--output-dir", str(tmp_path)]
    result = run(*args, module="mnist_cnn.evaluate")
    assert result.returncode == 0, result.stderr
    assert "Test set: Average loss:" in result.stdout and "/256 (" in result.stdout
    assert "Accuracy per class:" in result.stdout and "Confusion matrix:" in result.stdout
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads(run(*args, "--json", module="mnist_cnn.evaluate").stdout)
    assert report["test_total"] == 256 and len(report["per_class_accuracy"]) == 10
    # The synthetic test set is easy: a net that makes no mistake gets no mistakes.png.
    assert (tmp_path / "mistakes.png").exists() == bool(report["mistakes"])


def test_draw_pictures_draws_the_first_mistakes(tmp_path):
    pytest.importorskip("matplotlib")
    mistakes = [{"index": i, "true": 1, "predicted": 7, "probability": 0.9} for i in (4, 2, 0)]
    report = {"confusion": torch.eye(10, dtype=torch.long).tolist(), "mistakes": mistakes}
    drawn = draw_pictures(report, torch.randn(5, 1, 28, 28), tmp_path / "new", mistakes=2)
    assert drawn == [str(tmp_path / "new" / name) for name in ("confusion.png", "mistakes.png")]
    assert all(Path(path).read_bytes()[:4] == b"\x89PNG" for path in drawn)


def test_evaluate_missing_checkpoint_is_one_line(tmp_path):
    assert_one_line_error(run(str(tmp_path / "nope.pt"), module="mnist_cnn.evaluate"), "nope.pt")


def test_negative_mistakes_is_a_one_line_error(checkpoint, mnist_dir, tmp_path, capfd):
    args = [str(checkpoint), "--data-dir", str(mnist_dir), "--output-dir", str(tmp_path), "--device", "cpu"]
    result = run_main(EVALUATE, [*args, "--mistakes", "-3"], capfd)
    assert_one_line_error(result, "--mistakes")
    assert result.stdout == ""


def test_zero_mistakes_draws_only_the_confusion_matrix(checkpoint, mnist_dir, tmp_path, capfd):
    pytest.importorskip("matplotlib")
    args = [str(checkpoint), "--data-dir", str(mnist_dir), "--output-dir", str(tmp_path), "--device", "cpu"]
    result = run_main(EVALUATE, [*args, "--mistakes", "0"], capfd)
    assert result.returncode == 0 and result.stderr == ""
    assert f"Drew {tmp_path / 'confusion.png'}\n" in result.stdout
    assert not (tmp_path / "mistakes.png").exists()


@pytest.mark.parametrize("as_json", [False, True])
def test_pictures_that_cannot_be_written_are_a_note_after_the_report(
    checkpoint, mnist_dir, tmp_path, capfd, as_json
):
    pytest.importorskip("matplotlib")
    (tmp_path / "file.txt").write_text("not a folder")
    output_dir = tmp_path / "file.txt" / "pictures"  # a folder that cannot be made (root may write anywhere)
    args = [str(checkpoint), "--data-dir", str(mnist_dir), "--output-dir", str(output_dir), "--device", "cpu"]
    result = run_main(EVALUATE, args + (["--json"] if as_json else []), capfd)
    assert result.returncode == 0
    if as_json:
        assert json.loads(result.stdout)["test_total"] == 256
    else:
        assert "Accuracy per class:" in result.stdout and "Confusion matrix:" in result.stdout
        assert "Drew" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("note: "), result.stderr
    assert str(output_dir / "confusion.png") in lines[0] and "--output-dir" in lines[0]
