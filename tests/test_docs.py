"""The README and the pages in docs/: their examples run and print what they show, their
generated tables are the ones the code makes, and what they name exists.

A Python block runs in a fresh namespace. A `console` block's `$` commands run in a shell, and
the lines under a command, when there are any, are its expected output (stdout and stderr
together): `...` on a line
of its own stands for any lines, and within a line for any text. A comment right before a block
says how to run it: `<!-- test: needs MNIST -->` (only where MNIST_DATA_DIR is set; commands
that train or evaluate need it without saying), `<!-- test: with a server -->` (a real
`mnist-cnn-serve` answers at the address the block names), `<!-- test: skip (why) -->`.
Everything runs in a folder of its own holding `docs/digits`, `scripts/`, `hubconf.py` and, where
it is set, `data` (the real MNIST). Installing, the tests themselves and building these docs are
what CI does around the tests, so `pip`, `pytest` and `mkdocs` lines are not run here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import NO_NETWORK, REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"(?:<!-- test: (?P<note>[^>]*?) -->\n)?```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)```", re.S)
NOT_RUN = ("pip ", "pytest", "mkdocs ", "sudo ", "mkdir ", "for ")  # see the module's docstring
NEEDS_MNIST = re.compile(r"--data-dir|MNIST_DATA_DIR|mnist_cnn\.train|mnist-cnn-train|torchrun|evaluate")
SERVER = re.compile(r"^(mnist-cnn-serve|python -m mnist_cnn\.serve)\b")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    body: str
    note: str  # the comment before it, or ""

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"


def blocks(lang: str) -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group("lang") == lang:
                line = text.count("\n", 0, match.start("body"))
                found.append(Block(page, line, lang, match.group("body"), match.group("note") or ""))
    return found


def commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each `$` line of a console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:].split("  #")[0].strip(), []))
        elif steps:
            steps[-1][1].append(line.rstrip())
    return steps


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether actual lines are expected's, where a line "..." stands for any lines, and "..."
    within a line for any text."""
    if not expected:
        return not actual
    first, rest = expected[0], expected[1:]
    if first == "...":
        return any(matches(rest, actual[i:]) for i in range(len(actual) + 1))
    pattern = ".*".join(map(re.escape, first.split("...")))
    return bool(actual) and re.fullmatch(pattern, actual[0]) is not None and matches(rest, actual[1:])


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A folder laid out as the examples expect: docs/digits, scripts/, hubconf.py, and data
    (the real MNIST) where MNIST_DATA_DIR is set."""
    shutil.copytree(REPO / "docs" / "digits", tmp_path / "docs" / "digits")
    (tmp_path / "scripts").symlink_to(REPO / "scripts")
    (tmp_path / "hubconf.py").symlink_to(REPO / "hubconf.py")
    if os.environ.get("MNIST_DATA_DIR"):
        (tmp_path / "data").symlink_to(Path(os.environ["MNIST_DATA_DIR"]).resolve())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def needs(block: Block, mnist: bool) -> None:
    """Skip what the block's comment, or its need for the data, rules out here."""
    if block.note.startswith("skip"):
        pytest.skip(f"{block.id}: {block.note}")
    if (mnist or block.note == "needs MNIST") and not os.environ.get("MNIST_DATA_DIR"):
        pytest.skip(f"{block.id} needs the real MNIST: set MNIST_DATA_DIR to a folder holding MNIST/raw/")


def mark(block: Block, mnist: bool) -> tuple[pytest.MarkDecorator, ...]:
    """real_data for a block that needs MNIST (which makes it slow too), slow when it says so."""
    marks = (pytest.mark.real_data,) if mnist or block.note == "needs MNIST" else ()
    return marks + ((pytest.mark.slow,) if block.note == "slow" else ())


PYTHON = blocks("python")


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id, marks=mark(b, False)) for b in PYTHON])
def test_python_examples_run(block, workdir):
    needs(block, False)
    exec(compile(block.body, block.id, "exec"), {"__name__": "__docs__"})


CONSOLE = blocks("console")


def console_needs_mnist(block: Block) -> bool:
    return any(NEEDS_MNIST.search(command) for command, _ in commands(block))


@pytest.mark.slow  # whole processes, a few seconds each
@pytest.mark.parametrize(
    "block", [pytest.param(b, id=b.id, marks=mark(b, console_needs_mnist(b))) for b in CONSOLE]
)
def test_console_examples_print_what_they_show(block, workdir):
    needs(block, console_needs_mnist(block))
    env = {
        **os.environ,
        **NO_NETWORK,  # no downloads; this machine's own server is still reachable:
        "no_proxy": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # the mnist-cnn-* commands
    }
    server = start_server(env) if block.note == "with a server" else None
    try:
        for command, expected in commands(block):
            if command.startswith(NOT_RUN):
                continue
            if server is not None:
                command = command.replace("http://127.0.0.1:8000", server[1])
            output = serve_once(command, env) if SERVER.match(command) else run(command, env)
            lines = [line.rstrip() for line in output.splitlines()]
            if expected:  # a command shown without its output is only run
                assert matches(expected, lines), f"{block.id}: $ {command}\n" + "\n".join(lines)
            if server is not None:
                assert '"error"' not in output, output
    finally:
        if server is not None:
            server[0].send_signal(signal.SIGINT)
            server[0].communicate(timeout=20)


def run(command: str, env: dict) -> str:
    result = subprocess.run(
        command,
        shell=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, in the order the lines were written (unbuffered)
        text=True,
        env=env,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout
    assert result.returncode == 0, f"$ {command}\n{output[-3000:]}"
    return output


def serve_once(command: str, env: dict) -> str:
    """A command that starts the server: its first line, then Ctrl-C."""
    process = subprocess.Popen(
        [*command.split(), "--port", "8000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    return line


def start_server(env: dict) -> tuple[subprocess.Popen, str]:
    """A real server on a free port, and its address."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_cnn.serve", "--port", "0", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    found = re.search(r"at (http://127\.0\.0\.1:\d+)", process.stdout.readline())
    if not found:
        process.kill()
        pytest.fail(f"the server did not start: {process.communicate(timeout=10)[1]}")
    return process, found.group(1)


def test_the_generated_tables_are_the_ones_the_code_makes():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "doc_tables.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_page_is_in_the_site_and_every_test_named_exists():
    nav = (REPO / "mkdocs.yml").read_text()
    assert all(f": {page.name}" in nav for page in PAGES[1:]), [
        p.name for p in PAGES[1:] if p.name not in nav
    ]
    for page in PAGES:
        for file, name in re.findall(r"`(test_\w+\.py)::(\w+)`", page.read_text()):
            assert f"def {name}(" in (REPO / "tests" / file).read_text(), f"{page.name}: {file}::{name}"


def test_the_docs_speak_to_users():
    """Examples use data/ or $MNIST_DATA_DIR, and say nothing of how the project is developed."""
    for page in PAGES:
        text = page.read_text()
        assert "../shared" not in text, page.name
        text = re.sub(r"`[^`\n]*`", "", text)  # code is code: onnxruntime's session.get_modelmeta()
        assert not re.search(r"\bsessions?\b|(?<!parameter )\bbudget\b", text), (
            page.name,
            re.findall(r".*\b(?:sessions?|budget)\b.*", text),
        )
