"""`python -m mnist_cnn.explain [CHECKPOINT | --weights NAME] IMAGE --output PNG`: what the net sees.

Draws, in one PNG, the input as the net saw it, the first layer's filters, every layer's feature
maps, and where the net found the two likeliest classes (their class activation maps: cam.py
computes them, plots.explain_figure draws them).
"""

from __future__ import annotations

from pathlib import Path

from .cam import explain
from .cli import ArgumentParser, add_net_arguments, exit_on_error, open_named_net, split_inputs
from .data import DATASETS
from .errors import MnistCnnError, moved
from .plots import NoMatplotlib, draw_explain, percent
from .preprocess import load_digit

# The maps, where they were before they had a module of their own: cam.py.
__getattr__ = moved(
    __name__,
    dict.fromkeys(
        [
            *(
                "ClassActivationMaps",
                "ClassMap",
                "Explanation",
                "LayerHook",
                "as_batch",
                "class_activation_maps",
            ),
            *("eval_mode", "feature_maps", "first_filters", "global_pool", "grad_cam", "hooked_layers"),
            *("predicted_class_map", "this_thread_only", "upsample"),
        ],
        ".cam",
    ),
)


@exit_on_error
def main(argv: list[str] | None = None) -> int:
    """Parse flags, load the net and the image, draw what the net sees into one PNG."""
    p = ArgumentParser(
        "mnist_cnn.explain",
        usage="%(prog)s [CHECKPOINT | --weights NAME] IMAGE --output PNG [options]",
        description="Draw what a net sees in one image: the input as the net saw it, the first "
        "layer's filters, every layer's feature maps, and where it found the two likeliest classes.",
    )
    add_net_arguments(p, images="one image")
    p.add_argument("--output", required=True, metavar="PNG", help="the picture to write (a .png file)")
    args = p.parse_args(argv)
    if Path(args.output).suffix.lower() != ".png":
        raise MnistCnnError(f"--output must name a .png file, got {args.output}")
    checkpoint, images = split_inputs(args.inputs)
    if len(images) != 1:
        raise MnistCnnError(f"give one image to explain, got {len(images)}: {' '.join(images)}")
    trained = open_named_net(args, checkpoint)
    _, image = load_digit(images[0], trained.normalization)

    explanation = explain(trained.model, image)
    classes = DATASETS[trained.dataset].classes
    try:
        draw_explain(explanation, classes, args.output)
    except NoMatplotlib as error:  # the picture is this command's whole output: an error, not a note
        raise MnistCnnError(str(error)) from None
    cams = explanation.cams
    first, second = cams.ranked()[:2]
    print(
        f"Wrote {args.output}: {classes[first]} ({percent(float(cams.probabilities[first]))}), "
        f"runner-up {classes[second]} ({percent(float(cams.probabilities[second]))})"
    )
    return 0


if __name__ == "__main__":
    main()
