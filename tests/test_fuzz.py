"""Fuzzed image decoding: a short coverage-guided run of scripts/fuzz_images.py (atheris), and every
input a fuzz run ever found (tests/fuzz_findings/), each of which must now end in a tensor or
in the package's one-line error, within a second."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnist_cnn.errors import MnistCnnError
from mnist_cnn.preprocess import load_digit
from mnist_cnn.server import MAX_PIXELS, UPLOAD_FORMATS

from .helpers import REPO

FINDINGS = sorted((Path(__file__).parent / "fuzz_findings").glob("*"))


@pytest.mark.parametrize("finding", FINDINGS, ids=[path.name for path in FINDINGS])
def test_an_input_a_fuzz_run_found_is_a_tensor_or_one_line(finding):
    start = time.perf_counter()
    try:
        _, image = load_digit(
            finding.read_bytes(), name="the upload", max_pixels=MAX_PIXELS, formats=UPLOAD_FORMATS
        )
    except MnistCnnError as error:
        assert "\n" not in str(error) and str(error).startswith("the upload")
    else:
        assert image.shape == (1, 28, 28)
    assert time.perf_counter() - start < 1


@pytest.mark.slow
def test_a_short_fuzz_run_finds_nothing(tmp_path):
    pytest.importorskip("atheris", reason="atheris is not installed: pip install -e '.[test]'")
    run = subprocess.run(
        [sys.executable, "scripts/fuzz_images.py", "--runs", "3000", "--findings", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert run.returncode == 0 and "0 findings" in run.stdout, run.stdout + run.stderr[-3000:]
    assert run.stdout.startswith("3000 inputs"), run.stdout
