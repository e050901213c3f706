"""Install the lowest versions pyproject.toml allows into a throwaway virtual environment and run
the everyday tests there: the lower bounds are versions that were tested, not guesses.

    python scripts/lowest_deps.py                 # prints the versions, then pytest's summary
    python scripts/lowest_deps.py --keep DIR      # keep the environment in DIR

Every `name>=X` of the dependencies and of the plots, export, serve and search extras is installed as
`name==X` (with torch's own CUDA libraries, as pip gets torch); the test tools (pytest,
hypothesis, httpx) at whatever pip picks. Then the package itself, without its dependencies,
and `pytest -m "not slow"`. Takes a few minutes and a few GB of downloads; needs Python 3.11
(tomllib), like the rest of the development tools.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
EXTRAS = ("plots", "export", "serve", "search")
TEST_TOOLS = ("pytest", "hypothesis", "httpx==0.27.2")  # the lowest FastAPI's TestClient needs httpx < 0.28


def lowest_pins() -> list[str]:
    """`name==X` for every `name>=X` (extras kept) of the dependencies and EXTRAS."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [
        r for extra in EXTRAS for r in project["optional-dependencies"][extra]
    ]
    pins = []
    for requirement in requirements:
        found = re.fullmatch(r"([\w.\-\[\]]+)\s*>=\s*([\w.]+)", requirement.split(";")[0].strip())
        if found is None:
            raise SystemExit(f"pyproject.toml: {requirement!r} has no lower bound")
        pins.append(f"{found.group(1)}=={found.group(2)}")
    return pins


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", metavar="DIR", help="build the environment in DIR and keep it")
    p.add_argument("pytest_args", nargs="*", help="passed to pytest (default: -m 'not slow' -q)")
    args = p.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lowest-deps-"))
    venv = folder / "venv"
    python = venv / "bin" / "python"
    pins = lowest_pins()
    print("installing:", " ".join(pins), flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, *pins, *TEST_TOOLS], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(REPO)], check=True)
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
    names = {re.split(r"[\[=<>]", pin)[0].lower() for pin in pins}
    print(
        "installed:",
        ", ".join(line for line in freeze.stdout.split() if line.split("==")[0].lower() in names),
    )
    tests = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            *(args.pytest_args or ["-m", "not slow", "-q", "-p", "no:cacheprovider"]),
        ],
        cwd=REPO,
    )
    sys.exit(tests.returncode)


if __name__ == "__main__":
    main()
