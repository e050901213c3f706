"""`python -m mnist_cnn.predict [CHECKPOINT] IMAGE...`: the digit (or the class of the net's data
set) in each picture.

    python -m mnist_cnn.predict my_seven.png photos/          # the shipped improved net
    python -m mnist_cnn.predict runs/<run>/best.pt my_seven.png
    python -m mnist_cnn.predict --weights improved:FASHION_MNIST_V1 shoe.jpg
"""

from __future__ import annotations

import json
import sys

from .cli import ArgumentParser, add_net_arguments, exit_on_error, open_named_net, split_inputs
from .data import DATASETS
from .errors import MnistCnnError, moved
from .inference import predict_files

# Where they went: the net at work to inference.py, the flags every command shares to cli.py.
__getattr__ = moved(
    __name__,
    {
        **dict.fromkeys(["notes_on", "predict_digits"], ".inference"),
        **dict.fromkeys(
            ["CHECKPOINT_SUFFIXES", "add_net_arguments", "split_inputs", "weights_or_default"], ".cli"
        ),
    },
)


@exit_on_error
def main(argv: list[str] | None = None) -> int:
    """Parse flags, load the model, print each file's digit; exit 2 if any file was bad."""
    p = ArgumentParser(
        "mnist_cnn.predict",
        description="Read the handwritten digit in images, with a checkpoint, --weights, or the "
        "shipped improved net when neither is given.",
    )
    add_net_arguments(p, images="image files or folders of them")
    p.add_argument(
        "--top", type=int, default=3, metavar="K", help="show the K likeliest classes (default: 3)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = p.parse_args(argv)

    checkpoint, images = split_inputs(args.inputs)
    trained = open_named_net(args, checkpoint)
    classes = DATASETS[trained.dataset].classes
    if not 1 <= args.top <= len(classes):  # checked here: the checkpoint's data set sets the classes
        raise MnistCnnError(f"--top must be between 1 and {len(classes)}, got {args.top}")
    results, errors = predict_files(trained.model, images, trained.normalization, classes, args.top)
    if not results and not errors:
        raise MnistCnnError(f"no image files in {', '.join(images)}")
    if args.json:
        print(json.dumps({"predictions": results, "errors": errors}, indent=2))
    else:
        for r in results:
            top = ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in r["top"])
            print(f"{r['file']}: {r['label']} ({100 * r['probability']:.1f}%)   top {args.top}: {top}")
    for note in (note for r in results for note in r["notes"]):
        print(f"note: {note}", file=sys.stderr)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        raise SystemExit(2)
    return 0


if __name__ == "__main__":
    main()
