import json

import pytest
import torch
from PIL import Image

from mnist_cnn import ImprovedNetWeights, MnistCnnError, Net, load_model
from mnist_cnn.cli import weights_or_default
from mnist_cnn.inference import predict_digits, predict_files
from mnist_cnn.predict import main

from .helpers import assert_one_line_error, render_digit, run


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_predict_bad_inputs_are_one_line_errors(checkpoint, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert_one_line_error(
        run(str(checkpoint), str(tmp_path / "empty.png"), module="mnist_cnn.predict"), "empty.png"
    )
    (tmp_path / "model.pt").write_bytes(b"junk")
    render_digit().save(tmp_path / "d.png")
    bad_model = run(str(tmp_path / "model.pt"), str(tmp_path / "d.png"), module="mnist_cnn.predict")
    assert_one_line_error(bad_model, "model.pt")


def test_predict_skips_hidden_files_in_folders_but_reads_named_ones(checkpoint, tmp_path, capsys):
    render_digit("2").save(tmp_path / "two.png")
    (tmp_path / "._two.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # no image
    render_digit("3").save(tmp_path / ".three.png")
    assert main([str(checkpoint), str(tmp_path), "--json"]) == 0
    assert [p["file"] for p in json.loads(capsys.readouterr().out)["predictions"]] == [
        str(tmp_path / "two.png")
    ]
    assert main([str(checkpoint), str(tmp_path / ".three.png")]) == 0
    assert capsys.readouterr().out.startswith(str(tmp_path / ".three.png"))


def test_predict_top_k(checkpoint, tmp_path, capsys):
    render_digit("2").save(tmp_path / "two.png")
    assert main([str(checkpoint), str(tmp_path / "two.png"), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "top 5: " in out and out.split("top 5: ")[1].count("%") == 5
    assert main([str(checkpoint), str(tmp_path / "two.png"), "--top", "1", "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)["predictions"]
    assert len(prediction["top"]) == 1 and prediction["top"][0]["digit"] == prediction["digit"]
    for bad in ("0", "11", "-2"):
        with pytest.raises(SystemExit) as exit:
            main([str(checkpoint), str(tmp_path / "two.png"), "--top", bad])
        err = capsys.readouterr().err
        assert exit.value.code == 2 and len(err.strip().splitlines()) == 1
        assert err.startswith("error: --top must be between 1 and 10") and bad in err


def test_predict_says_which_frame_of_an_animated_gif_it_read(checkpoint, tmp_path, capsys):
    frames = [render_digit(str(d), (60, 60)) for d in range(5)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    frames[1].save(tmp_path / "still.gif")
    gif = str(tmp_path / "anim.gif")
    assert main([str(checkpoint), gif, str(tmp_path / "still.gif")]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"note: {gif} has 5 frames; read the first\n"
    assert captured.out.count("top 3: ") == 2
    assert main([str(checkpoint), gif, str(tmp_path / "still.gif"), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert [p["notes"] for p in predictions] == [[f"{gif} has 5 frames; read the first"], []]


def test_a_blank_picture_is_an_error_that_names_its_file(tmp_path):
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    results, errors = predict_files(ImprovedNetWeights.DEFAULT.load().model, [tmp_path / "blank.png"])
    assert not results and errors == [f"{tmp_path / 'blank.png'}: no digit found: the image is blank"]


def test_no_net_given_means_the_shipped_improved_net_named_in_a_note(capsys):
    """What predict, explain and serve open when given neither a checkpoint nor --weights."""
    note = "note: no checkpoint given: reading with the shipped ImprovedNetWeights.MNIST_V2\n"
    assert weights_or_default(None, None) == "improved:MNIST_V2" and capsys.readouterr().err == note
    assert weights_or_default(None, None, "fashion-mnist", quiet=True) == "improved:FASHION_MNIST_V1"
    assert weights_or_default("best.pt", None) is None and weights_or_default(None, "seed") == "seed"
    assert capsys.readouterr().err == ""  # quiet, or a net was given


def test_a_damaged_exif_block_or_a_mode_without_gray_is_read_or_one_line(tmp_path):
    """A truncated EXIF block is ignored (the picture is read as it lies); a LAB TIFF, which
    Pillow decodes but cannot turn gray, is one error naming the file, never a traceback."""
    from mnist_cnn.preprocess import load_digit

    digit = render_digit("7")
    exif = tmp_path / "exif.png"
    digit.save(exif, exif=b"MM\x00*\x00\x00\x00\x08\x00")
    assert load_digit(exif)[1].shape == (1, 28, 28)
    lab = tmp_path / "lab.tif"
    digit.convert("RGB").convert("LAB").save(lab)
    with pytest.raises(MnistCnnError, match=r"^.*lab\.tif: cannot read its pixels"):
        load_digit(lab)
