import json

import torch

from mnist_cnn import Net
from mnist_cnn.evaluate import confusion_text, evaluation_report

from .test_cli import assert_one_line_error, run


def evaluation_report_counts_the_confusion_and_orders_the_mistakes():
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
    result = run(
        str(checkpoint),
        "--data-dir",
        str(mnist_dir),
        "--output-dir",
        str(tmp_path),
        module="mnist_cnn.evaluate",
    )
    assert result.returncode == 0, result.stderr
    assert "Test set: Average loss:" in result.stdout and "/256 (" in result.stdout
    assert "Accuracy per class:" in result.stdout and "Confusion matrix:" in result.stdout
    for name in ("confusion.png", "mistakes.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    as_json = run(
        str(checkpoint),
        "--data-dir",
        str(mnist_dir),
        "--json",
        "--output-dir",
        str(tmp_path),
        module="mnist_cnn.evaluate",
    )
    report = json.loads(as_json.stdout)
    assert report["test_total"] == 256 and len(report["per_class_accuracy"]) == 10


def test_evaluate_missing_checkpoint_is_one_line(tmp_path):
    assert_one_line_error(run(str(tmp_path / "nope.pt"), module="mnist_cnn.evaluate"), "nope.pt")
