import json

import torch

from mnist_cnn import Net, load_model
from mnist_cnn.predict import predict_digits, predict_files

from .conftest import render_digit
from .test_cli import assert_one_line_error, run


def test_predict_digits_gives_sorted_top_guesses():
    torch.manual_seed(0)
    results = predict_digits(Net(), torch.randn(3, 1, 28, 28))
    assert len(results) == 3
    for r in results:
        probabilities = [t["probability"] for t in r["top"]]
        assert probabilities == sorted(probabilities, reverse=True) and len(probabilities) == 3
        assert r["digit"] == r["top"][0]["digit"] and 0 < r["probability"] <= 1


def test_predict_files_reports_bad_files_and_goes_on(checkpoint, tmp_path):
    render_digit("1").save(tmp_path / "one.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    results, errors = predict_files(load_model(checkpoint), [tmp_path / "one.png", tmp_path / "broken.png"])
    assert [r["file"] for r in results] == [str(tmp_path / "one.png")]
    assert len(errors) == 1 and str(tmp_path / "broken.png") in errors[0]


def test_predict_command_line(checkpoint, tmp_path):
    render_digit("2").save(tmp_path / "two.png")
    render_digit("3", dark_on_light=False, size=(300, 200)).save(tmp_path / "three.jpg")
    result = run(str(checkpoint), str(tmp_path), "--json", module="mnist_cnn.predict")
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)["predictions"]
    assert [p["file"].split("/")[-1] for p in predictions] == ["three.jpg", "two.png"]
    assert all(0 <= p["digit"] <= 9 and len(p["top"]) == 3 for p in predictions)
    text = run(str(checkpoint), str(tmp_path / "two.png"), module="mnist_cnn.predict")
    assert text.returncode == 0 and "two.png: " in text.stdout and "top 3:" in text.stdout


def test_predict_bad_inputs_are_one_line_errors(checkpoint, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert_one_line_error(
        run(str(checkpoint), str(tmp_path / "empty.png"), module="mnist_cnn.predict"), "empty.png"
    )
    (tmp_path / "model.pt").write_bytes(b"junk")
    render_digit().save(tmp_path / "d.png")
    bad_model = run(str(tmp_path / "model.pt"), str(tmp_path / "d.png"), module="mnist_cnn.predict")
    assert_one_line_error(bad_model, "model.pt")
