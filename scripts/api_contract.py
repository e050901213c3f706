"""Holds `mnist-cnn-serve` to its OpenAPI description with schemathesis: requests generated from the
description (valid ones and invalid ones), every check on each answer (no server error, a status
and a body the description allows, valid data accepted, invalid data rejected, 405 with Allow for
other methods), then the answers counted by operation and status, as a markdown table.

    python scripts/api_contract.py                      # over 10,000 requests, seed 1
    python scripts/api_contract.py --examples 200       # a few hundred: what the tests run

It starts the server itself (`python -m mnist_cnn.serve --port 0`, the shipped net) and stops it
at the end; exit status 1 when schemathesis found a failure.

What a valid image is cannot be said in JSON Schema ("something drawn on it"), so the description
says it in words, and this script tells schemathesis: a valid body is a small picture with a
stroke of ink on paper, in one of the formats the server reads. (Left to itself, schemathesis
sends a blank 1x1 PNG as a valid image, which the server rightly refuses with 422.)
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from schemathesis.cli import schemathesis as schemathesis_cli

from mnist_cnn.machine import cpu_model
from mnist_cnn.serve import start_in_background
from mnist_cnn.server import UPLOAD_FORMATS


@st.composite
def digit_images(draw: st.DrawFn) -> bytes:
    """A picture the server must read: 8 to 64 pixels a side, paper of any gray with a border of
    paper, one stroke of ink at least 96 levels darker than light paper or lighter than dark
    paper, in any of the upload formats."""
    width, height = draw(st.integers(8, 64)), draw(st.integers(8, 64))
    paper = draw(st.integers(0, 255))
    ink = draw(st.integers(0, paper - 96) if paper > 127 else st.integers(paper + 96, 255))
    xs = sorted(draw(st.integers(2, width - 3)) for _ in range(2))
    ys = sorted(draw(st.integers(2, height - 3)) for _ in range(2))
    picture = Image.new("L", (width, height), paper)
    stroke = [(xs[0], ys[0]), (xs[1], ys[1])]
    ImageDraw.Draw(picture).line(stroke, fill=ink, width=draw(st.integers(1, 4)))
    file = io.BytesIO()
    format = draw(st.sampled_from(UPLOAD_FORMATS))
    # Lossy compression may smear a thin stroke of a tiny picture into its paper: keep it whole.
    keep = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(format, {})
    picture.convert(draw(st.sampled_from(["L", "RGB"]))).save(file, format, **keep)
    return file.getvalue()


def tell_schemathesis_what_an_image_is() -> None:
    for media_type in ("image/*", "image/png", "application/octet-stream"):
        schemathesis.openapi.media_type(media_type, digit_images())


OPERATIONS = ["GET /health", "GET /model", "POST /predict"]


def answers_table(har: Path) -> str:
    """The requests of a HAR file counted by operation and answer status, as a markdown table
    (requests with other methods, which must get 405, in one row)."""
    counts: collections.Counter = collections.Counter()
    for entry in json.loads(har.read_text())["log"]["entries"]:
        path = "/" + entry["request"]["url"].split("/", 3)[3].split("?")[0]
        operation = f"{entry['request']['method']} {path}"
        counts[operation if operation in OPERATIONS else "other methods", entry["response"]["status"]] += 1
    statuses = sorted({status for _, status in counts})
    lines = [
        "| request | " + " | ".join(map(str, statuses)) + " | all |",
        "|---|" + "---:|" * (len(statuses) + 1),
    ]
    for operation in [*OPERATIONS, "other methods", "all"]:
        row = [
            sum(n for (o, s), n in counts.items() if s == status and operation in (o, "all"))
            for status in statuses
        ]
        lines.append(f"| {operation} | " + " | ".join(str(n or "") for n in row) + f" | {sum(row)} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--examples", type=int, default=10_000, help="cases per operation at most (default: 10,000)"
    )
    p.add_argument("--seed", type=int, default=1, help="schemathesis's seed (default: 1)")
    args = p.parse_args()

    tell_schemathesis_what_an_image_is()
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"  # the server is on this machine: never via a proxy
    server, url = start_in_background()
    try:
        with tempfile.TemporaryDirectory() as folder:
            har = Path(folder) / "requests.har"
            run = [
                *("run", f"{url}/openapi.json", "--checks", "all", "--seed", str(args.seed)),
                *("--max-examples", str(args.examples), "--workers", "1", "--no-color"),
                *("--generation-database", "none", "--report", "har", "--report-har-path", str(har)),
            ]
            here = os.getcwd()
            os.chdir(folder)  # schemathesis keeps a cache of what it found in .schemathesis/ here
            try:
                schemathesis_cli.main(run, standalone_mode=False)
                status = 0
            except SystemExit as exit:  # schemathesis ends with sys.exit: 1 when it found a failure
                status = exit.code or 0
            finally:
                os.chdir(here)
            table = answers_table(har) if har.exists() else "(no requests were recorded)"
    finally:
        server.send_signal(signal.SIGINT)  # as Ctrl-C: the server stops cleanly
        _, err = server.communicate(timeout=30)
    print(
        f"\nschemathesis {schemathesis.SCHEMATHESIS_VERSION}, --seed {args.seed} --examples {args.examples}; {cpu_model()}"
    )
    print(table)
    if "Traceback" in err:
        print(f"the server logged a traceback:\n{err}", file=sys.stderr)
        return 1
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
