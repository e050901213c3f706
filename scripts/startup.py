"""Where a 1-epoch run's seconds go, phase by phase, in one process as `python -m mnist_cnn.train`
goes through them (the data cache warm, as on every run after the first):

    python scripts/startup.py --data-dir ../shared/data

Prints a table of seconds per phase; the first line is the Python interpreter and `import torch`,
measured as a separate process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import tempfile
import time

PHASES: list[tuple[str, float]] = []


@contextlib.contextmanager
def phase(name: str):
    start = time.perf_counter()
    yield
    PHASES.append((name, time.perf_counter() - start))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="folder holding MNIST/raw/ (default: $MNIST_DATA_DIR, else ./data)")
    args = p.parse_args()

    with phase("python and `import torch` (a process of its own)"):
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
    import torch  # counted in the line above

    with phase("import mnist_cnn.train (torch already imported)"):
        from mnist_cnn import train
        from mnist_cnn.config import TrainConfig
        from mnist_cnn.data import load_splits, resolve_data_dir
        from mnist_cnn.model import build_model
        from mnist_cnn.optim import build_optimizer
        from mnist_cnn.runs import Learner, draw_run_curves, save_run
    config = TrainConfig(data_dir=args.data_dir)
    with phase("the torchsummary table"), contextlib.redirect_stdout(io.StringIO()):
        train.print_summary(build_model(config.model))
    with phase("the data: read (cache), measured, normalized"):
        splits = load_splits(resolve_data_dir(config.data_dir), config.dataset)
        images = splits.train_images.contiguous(memory_format=torch.channels_last)
        test_images = splits.test_images.contiguous(memory_format=torch.channels_last)
    model = build_model(config.model).to(memory_format=torch.channels_last)
    with phase("the optimizer (its first use imports torch._dynamo)"):
        optimizer, scheduler = build_optimizer(model, config, -(-len(images) // config.batch_size))
    learner = Learner(model, optimizer, scheduler, torch.Generator().manual_seed(config.seed))
    with phase("training: one epoch"):
        loss = train.train_epoch(learner, images, splits.train_labels, config)
    with phase("evaluation: the test set"):
        test_loss, correct, total = train.evaluate_split(model, test_images, splits.test_labels)
    history = [{"epoch": 1, "train_loss": loss, "test_loss": test_loss, "test_accuracy": correct / total}]
    with tempfile.TemporaryDirectory() as folder:
        from pathlib import Path

        checkpoint = {
            "history": history,
            "model_state": model.state_dict(),
            "optimizer_state": optimizer.state_dict(),
        }
        with phase("metrics, last.pt and best.pt"):
            save_run(Path(folder), checkpoint, save_model=True)
        with phase("curves.png (imports matplotlib)"):
            draw_run_curves(Path(folder), history)

    print("| phase | seconds |\n|---|---:|")
    for name, seconds in PHASES:
        print(f"| {name} | {seconds:.2f} |")
    rest = sum(s for n, s in PHASES if not n.startswith("training"))
    print(f"| all but training | {rest:.2f} |")


if __name__ == "__main__":
    main()
