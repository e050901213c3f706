"""The package's shape: library below, commands on top, no import cycles, scripts that share code
only through the package, and every name that could be imported before the modules were
reshaped still importable from where it was."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

from .helpers import REPO

PACKAGE = REPO / "mnist_cnn"
COMMANDS = {"evaluate", "predict", "export", "explain", "serve", "search"}  # and train's main: see below
# Public names of the package as it was before the reshape (tests/public_names.json, read from the
# modules of that commit): each must still import from the module it was in. These few were
# replaced, not moved: the run's state is runs.Run now, with .checkpoint() and .restore().
REPLACED = {("mnist_cnn.runs", "run_state"), ("mnist_cnn.runs", "restore_run")}


def package_imports(module: Path, *, top_level_only: bool) -> set[str]:
    """The package's modules that module imports (relative imports), at its top level only or
    anywhere (in functions too)."""
    tree = ast.parse(module.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found - {"__init__"}


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", sorted(set(MODULES) - COMMANDS - {"train"}))
def test_library_modules_import_no_command(module):
    imported = package_imports(PACKAGE / f"{module}.py", top_level_only=False)
    assert not imported & COMMANDS, sorted(imported & COMMANDS)
    if module not in ("sweep", "study"):  # many runs of fit: the library above the training loop
        assert "train" not in imported


def test_no_command_imports_another_command():
    for command in COMMANDS | {"train"}:
        imported = package_imports(PACKAGE / f"{command}.py", top_level_only=False)
        assert not imported & (COMMANDS | {"train"}) - {command}, command


def test_the_modules_import_each_other_in_no_cycle():
    # Imports inside functions count too: a module imported late is still one this module needs.
    graph = {m: package_imports(PACKAGE / f"{m}.py", top_level_only=False) & set(MODULES) for m in MODULES}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, " -> ".join([*path, module])
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in MODULES:
        visit(module, [])


def test_every_module_says_what_it_is_for():
    for path in PACKAGE.glob("*.py"):
        assert ast.get_docstring(ast.parse(path.read_text())), path.name


def test_scripts_share_code_only_through_the_package():
    scripts = {p.stem for p in (REPO / "scripts").glob("*.py")}
    for path in (REPO / "scripts").glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & scripts, (path.name, sorted(imported & scripts))
        assert "sys.path" not in path.read_text(), path.name


def test_names_from_before_the_reshape_still_import_where_they_were():
    names = json.loads((Path(__file__).with_name("public_names.json")).read_text())
    missing = [
        f"{module}.{name}"
        for module, module_names in names.items()
        for name in module_names
        if (module, name) not in REPLACED and not hasattr(importlib.import_module(module), name)
    ]
    assert not missing


def test_a_moved_name_is_the_object_in_its_new_home():
    from mnist_cnn import cam, cli, explain, losses, serve, server, train

    assert explain.class_activation_maps is cam.class_activation_maps
    assert serve.create_app is server.create_app
    assert train.Teacher is losses.Teacher
    from mnist_cnn.errors import exit_on_error

    assert exit_on_error is cli.exit_on_error
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = train.nothing
