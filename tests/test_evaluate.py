import json
from pathlib import Path

import pytest
import torch

from mnist_cnn import Net
from mnist_cnn.evaluate import draw_pictures
from mnist_cnn.inference import confusion_text, evaluation_report, first_mistakes

from .helpers import EVALUATE, assert_one_line_error, run, run_main


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_evaluate_missing_checkpoint_is_one_line(tmp_path):
    assert_one_line_error(run(str(tmp_path / "nope.pt"), module="mnist_cnn.evaluate"), "nope.pt")


def seed_net_args(mnist_dir, output_dir) -> list[str]:
    """evaluate's flags for the shipped seed net on the synthetic data."""
    return [
        "--weights",
        "seed",
        "--data-dir",
        str(mnist_dir),
        "--output-dir",
        str(output_dir),
        "--device",
        "cpu",
    ]


@pytest.mark.parametrize("flag", ["--mistakes", "--explain"])
def test_a_negative_number_of_pictured_mistakes_is_a_one_line_error(flag, mnist_dir, tmp_path, capfd):
    args = seed_net_args(mnist_dir, tmp_path)
    result = run_main(EVALUATE, [*args, flag, "-3"], capfd)
    assert_one_line_error(result, f"{flag} must be at least 0, got -3")
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_draw_pictures_explains_the_first_mistakes(tmp_path):
    pytest.importorskip("matplotlib")
    mistakes = [{"index": i, "true": 1, "predicted": 7, "probability": 0.9} for i in (4, 2, 0)]
    report = {"confusion": torch.eye(10, dtype=torch.long).tolist(), "mistakes": mistakes}
    drawn = draw_pictures(report, torch.randn(5, 1, 28, 28), tmp_path, 0, explain=2, model=Net())
    assert drawn == [str(tmp_path / name) for name in ("confusion.png", "explain-mistakes.png")]
    assert all(Path(path).read_bytes()[:4] == b"\x89PNG" for path in drawn)


def test_the_shared_mistakes_are_the_reports_first(tmp_path):
    mistakes = [{"index": i, "true": i, "predicted": 9 - i, "probability": 1 / (i + 2)} for i in (3, 1, 2)]
    images = torch.arange(5.0)[:, None, None, None].expand(5, 1, 28, 28)
    shown = first_mistakes({"mistakes": mistakes}, images, 2)
    assert shown.images[:, 0, 0, 0].tolist() == [3.0, 1.0]
    assert (shown.true, shown.predicted, shown.probability) == ([3, 1], [6, 8], [0.2, 1 / 3])
    assert first_mistakes({"mistakes": mistakes}, images, 0).images.shape == (0, 1, 28, 28)


@pytest.mark.parametrize("as_json", [False, True])
def test_explain_draws_the_class_maps_of_the_most_confident_mistakes(mnist_dir, tmp_path, capfd, as_json):
    """The shipped seed net, on synthetic bars that are no digits: plenty of mistakes."""
    pytest.importorskip("matplotlib")
    args = seed_net_args(mnist_dir, tmp_path)
    result = run_main(
        EVALUATE, [*args, "--mistakes", "4", "--explain", "6"] + (["--json"] if as_json else []), capfd
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    pictures = [str(tmp_path / name) for name in ("confusion.png", "mistakes.png", "explain-mistakes.png")]
    if as_json:
        assert len(json.loads(result.stdout)["mistakes"]) >= 6
    else:
        assert f"Drew {pictures[0]}, {pictures[1]} and {pictures[2]}\n" in result.stdout
    assert all(Path(path).read_bytes()[:4] == b"\x89PNG" for path in pictures)


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
