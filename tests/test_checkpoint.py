import pickle

import pytest
import torch

from mnist_cnn import MnistCnnError, Net, TrainConfig, fit, load_checkpoint, load_model, save_checkpoint


def test_save_model_writes_last_and_best_that_load_back(mnist_dir, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(
        data_dir=str(mnist_dir), batch_size=32, epochs=2, save_model=True, output_dir=str(out)
    )
    history = fit(config)
    assert {p.name for p in out.iterdir()} == {"last.pt", "best.pt"}  # no temporary files left
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["epoch"] == 2 and checkpoint["model"] == "seed"
    assert TrainConfig.from_dict(checkpoint["config"]) == config
    assert checkpoint["history"] == history
    model = load_model(out / "best.pt")
    assert isinstance(model, Net) and not model.training
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "deep" / "c.pt"
    save_checkpoint(path, {"model_state": {"w": torch.ones(2)}})
    save_checkpoint(path, {"model_state": {"w": torch.zeros(2)}})
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]
    assert torch.equal(load_checkpoint(path)["model_state"]["w"], torch.zeros(2))


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "not a readable checkpoint"),
        (b"not a checkpoint at all", "not a readable checkpoint"),
        (pickle.dumps(Evil()), "not a readable checkpoint"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(MnistCnnError, match=match):
        load_model(path)


def test_other_shapes_and_missing_files_are_clear_errors(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": "seed", "model_state": {"features.0.weight": torch.zeros(3)}}, path)
    with pytest.raises(MnistCnnError, match="does not fit"):
        load_model(path)
    torch.save({"weights": 1}, path)
    with pytest.raises(MnistCnnError, match="not an mnist-cnn checkpoint"):
        load_model(path)
    with pytest.raises(MnistCnnError, match="does not exist"):
        load_model(tmp_path / "nope.pt")
