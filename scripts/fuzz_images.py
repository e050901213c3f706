"""Fuzzes the path from an upload's bytes to the 28x28 tensor the net reads (preprocess.load_digit,
as the server and `mnist-cnn-predict` call it) with atheris, a coverage-guided fuzzer (libFuzzer
for Python): Pillow's decoders, which are where crafted files do damage, and our preprocessing.

    python scripts/fuzz_images.py --seconds 1800         # the docs' run: half an hour
    python scripts/fuzz_images.py --runs 3000            # a short run (the tests')

Every input must end in a (1, 28, 28) tensor of finite numbers or in the package's one-line
error (MnistCnnError), within a second, taking at most 1 GB of memory at its peak (measured per
input: Linux's peak RSS, reset before each); anything else is a finding, written to --findings
(default: fuzz-findings/) for tests/test_fuzz.py to keep. The fuzzing starts from the inputs kept
so far (--corpus), docs/digits, and small pictures made here in every upload format and many of
Pillow's modes, and mutates them with libFuzzer's strategies, guided by the Python lines (of
Pillow's plugins and of mnist_cnn) each input reaches. libFuzzer's own memory grows with every
input it tries (about 12 KB each here), so it runs in chunks of two minutes, each a fresh process
going on from the corpus. It ends with a line of figures: inputs tried, edges and features
covered, the slowest input, findings.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLOWEST = 1.0  # seconds: a slower input is a finding
MOST_MEMORY_MB = 1024  # what one input may add to the process's memory at its peak
CHUNK_SECONDS = 120  # libFuzzer's own memory grows with every input it tries: a fresh process this often


def seed_pictures(folder: Path) -> None:
    """docs/digits and small pictures in each upload format and many modes, written to folder."""
    from PIL import Image, ImageDraw

    from mnist_cnn.server import UPLOAD_FORMATS

    for path in sorted((REPO / "docs" / "digits").iterdir()):
        (folder / path.name).write_bytes(path.read_bytes())
    digit = Image.new("L", (16, 16), 255)
    ImageDraw.Draw(digit).line([(5, 3), (11, 3), (7, 13)], fill=0, width=2)  # a 7
    for format in UPLOAD_FORMATS:
        for mode in ("1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK"):
            file = io.BytesIO()
            try:
                digit.convert(mode).save(file, format)
            except (OSError, ValueError, KeyError):  # a mode this format cannot hold
                continue
            (folder / f"seven-{mode.replace(';', '')}.{format.lower()}").write_bytes(file.getvalue())
    frames = [digit, digit.rotate(90)]
    file = io.BytesIO()
    frames[0].save(file, "GIF", save_all=True, append_images=frames[1:])
    (folder / "animated.gif").write_bytes(file.getvalue())


def memory_mb(field: str) -> int:
    """VmRSS (now) or VmHWM (the peak since it was last reset) of this process, in MB."""
    return (
        int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1)) // 1024
    )


def fuzz(libfuzzer_args: list[str], stats: Path) -> None:
    """The worker: atheris's loop over load_digit (it never returns: libFuzzer ends the process)."""
    import atheris
    import numpy  # noqa: F401  (torch and numpy are not instrumented: not what is fuzzed, and large)
    import torch

    with atheris.instrument_imports(include=["PIL", "mnist_cnn"]):
        from PIL import Image

        Image.init()  # imports every format plugin, instrumented
        from mnist_cnn.errors import MnistCnnError
        from mnist_cnn.preprocess import load_digit
        from mnist_cnn.server import MAX_PIXELS, UPLOAD_FORMATS

    torch.set_num_threads(1)
    slowest = {"seconds": 0.0}

    def one_input(data: bytes) -> None:
        before = memory_mb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS: the peak of this input alone
        start = time.perf_counter()
        try:
            _, image = load_digit(data, name="the upload", max_pixels=MAX_PIXELS, formats=UPLOAD_FORMATS)
        except MnistCnnError as error:
            if "\n" in str(error) or not str(error).startswith("the upload"):
                raise AssertionError(f"not one line naming the upload: {error!r}") from None
        else:
            if image.shape != (1, 28, 28) or not torch.isfinite(image).all():
                raise AssertionError(
                    f"a tensor of shape {tuple(image.shape)} (finite: {bool(torch.isfinite(image).all())})"
                )
        seconds = time.perf_counter() - start
        if seconds > slowest["seconds"]:
            slowest["seconds"] = seconds
            stats.write_text(json.dumps(slowest))
        if seconds > SLOWEST:
            raise AssertionError(f"took {seconds:.2f} s, over {SLOWEST:g} s")
        if (grew := memory_mb("VmHWM") - before) > MOST_MEMORY_MB:
            raise AssertionError(f"took {grew} MB of memory at its peak, over {MOST_MEMORY_MB} MB")

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, help="fuzz this long (default: until --runs)")
    p.add_argument("--runs", type=int, help="fuzz this many inputs (default: 1,000,000 without --seconds)")
    p.add_argument("--findings", type=Path, default=Path("fuzz-findings"), help="default: fuzz-findings/")
    p.add_argument(
        "--corpus",
        type=Path,
        default=Path("fuzz-corpus"),
        help="the inputs kept so far, which a run starts from and adds to (default: fuzz-corpus/)",
    )
    p.add_argument(
        "--rss-limit-mb",
        type=int,
        default=4096,
        help="libFuzzer's bound on the whole process (default: 4096)",
    )
    p.add_argument("--seed", type=int, default=1, help="libFuzzer's seed (default: 1)")
    p.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        stats, *libfuzzer_args = args.worker
        fuzz(libfuzzer_args, Path(stats))
        return 0

    args.findings.mkdir(parents=True, exist_ok=True)
    args.corpus.mkdir(parents=True, exist_ok=True)
    runs_wanted = args.runs or (None if args.seconds else 1_000_000)
    log_path = args.findings / "fuzz.log"
    log_path.write_text("")
    runs, start, slowest = 0, time.monotonic(), 0.0
    with tempfile.TemporaryDirectory() as folder:
        seeds, stats = Path(folder) / "seeds", Path(folder) / "stats.json"
        seeds.mkdir()
        seed_pictures(seeds)
        while True:  # chunks, each a fresh process going on from the corpus so far
            left = None if not args.seconds else args.seconds - (time.monotonic() - start)
            if (left is not None and left < 1) or (runs_wanted is not None and runs >= runs_wanted):
                break
            limits = [f"-max_total_time={int(min(CHUNK_SECONDS, left or CHUNK_SECONDS))}"]
            if runs_wanted is not None:
                limits.append(f"-runs={runs_wanted - runs}")
            command = [
                *(sys.executable, __file__, "--worker", str(stats), *limits, f"-seed={args.seed + runs}"),
                *(f"-rss_limit_mb={args.rss_limit_mb}", "-timeout=10", "-print_final_stats=1"),
                *(f"-artifact_prefix={args.findings.resolve()}/", str(args.corpus), str(seeds)),
            ]  # new inputs go to the first folder
            with log_path.open("a") as log_file:  # libFuzzer's own log, whole
                worker = subprocess.run(command, stderr=log_file, env={**os.environ, "OMP_NUM_THREADS": "1"})
            chunk = log_path.read_text(errors="replace").rsplit("INFO: Seed:", 1)[-1]
            runs += int((re.findall(r"stat::number_of_executed_units: (\d+)", chunk) or ["0"])[-1])
            if stats.exists():
                slowest = max(slowest, json.loads(stats.read_text())["seconds"])
            if worker.returncode != 0:
                break
    wall = time.monotonic() - start
    log = log_path.read_text(errors="replace")
    done = re.findall(r"^#\d+\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)", log, re.MULTILINE)
    cov, ft, corp = done[-1] if done else ("?", "?", "?")
    findings = sorted(path for path in args.findings.iterdir() if path.name != "fuzz.log")
    peak = max(map(int, re.findall(r"stat::peak_rss_mb:\s+(\d+)", log) or ["0"]))
    print(
        f"{runs} inputs in {wall:.0f} s: coverage {cov} edges, {ft} features, corpus {corp}; slowest input "
        f"{slowest * 1000:.0f} ms; fuzzer's peak memory {peak} MB; {len(findings)} findings"
        + "".join(f"\n  {path}" for path in findings)
    )
    if worker.returncode != 0:
        print(log[-3000:], f"(all of libFuzzer's log: {log_path})", file=sys.stderr)
    return 1 if findings or worker.returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
