"""Write the tables that mirror the code into the docs, so that they cannot drift from it.

    python scripts/doc_tables.py           # rewrite every generated table in place
    python scripts/doc_tables.py --check   # exit 1, naming the file, when one is stale (CI's test)

A generated table sits between two markers in a Markdown file:

    <!-- generated: train-flags -->
    ...
    <!-- end generated -->

and TABLES says how each is made. The training flags come from `python -m mnist_cnn.train`'s own
parser, whose flags come from TrainConfig's fields: help, defaults and the improved net's recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
from collections.abc import Callable
from pathlib import Path

from mnist_cnn.cli import default_text
from mnist_cnn.config import FIELDS, RECIPES
from mnist_cnn.model import build_model
from mnist_cnn.train import parser as train_parser
from mnist_cnn.train import print_summary
from mnist_cnn.weights import WEIGHTS, get_weights

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("**/*.md"))]
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def cell(text: str) -> str:
    """Text fit for a Markdown table cell: flags and file names as code, no stray pipes."""
    text = re.sub(r"(?<![\w`])(--[\w-]+|\$[A-Z_]+|\./data|\w+/raw/|last\.pt|best\.pt)", r"`\1`", text)
    return text.replace("|", "\\|")


def value_text(name: str, value: object) -> str:
    """A recipe's value for a field, as the table shows defaults."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value) if value != FIELDS[name].default else default_text(name)


def train_flags() -> str:
    """Every flag of `python -m mnist_cnn.train`: its default for the seed net and, where its
    recipe differs, for the improved net."""
    rows = ["| flag | default (seed / improved) | meaning |", "|---|---|---|"]
    for action in train_parser()._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = action.dest
        if isinstance(action, argparse.BooleanOptionalAction):
            shown = f"`--[no-]{action.option_strings[0].removeprefix('--')}`"
        else:
            metavar = f" {action.metavar}" if action.metavar else ""
            shown = f"`{action.option_strings[0]}{metavar}`"
        meaning = re.sub(r" \(default: .*\)$", "", action.help or "", flags=re.S).replace("%%", "%")
        default = ""
        if name in FIELDS:
            if action.choices:
                shown = f"`{action.option_strings[0]} {{{','.join(action.choices)}}}`"
            if isinstance(action, argparse.BooleanOptionalAction) or action.nargs != 0:
                default = default_text(name)
                improved = RECIPES["improved"].get(name, FIELDS[name].default)
                if improved != FIELDS[name].default:
                    default = f"{default} / {value_text(name, improved)}"
        rows.append(f"| {shown} | {cell(default)} | {cell(meaning)} |")
    return "\n".join(rows) + "\n"


def weights() -> str:
    """Every shipped weights file, from its own metadata: parameters, data set, test accuracy,
    size and sha256."""
    rows = [
        "| weights | file | parameters | data set | test accuracy | size | sha256 |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    default = get_weights("DEFAULT")
    for enum in WEIGHTS.values():
        for member in enum:  # an Enum's iteration leaves out its aliases: each file once
            meta = member.meta
            roles = ["its `DEFAULT`"] * (member is enum.DEFAULT) + ["`--weights DEFAULT`"] * (
                member is default
            )
            label = f"`{member}`" + (f" ({', and '.join(roles)})" if roles else "")
            rows.append(
                f"| {label} | `{member.path.name}` | {meta['num_params']:,} | {meta['dataset']} "
                f"| {100 * meta['metrics']['test_accuracy']:.2f}% | {member.path.stat().st_size // 1024} KB "
                f"| `{meta['sha256'][:12]}` |"
            )
    return "\n".join(rows) + "\n"


def summary(model: str) -> Callable[[], str]:
    """torchsummary's table of a net for a 1x28x28 input, as `python -m mnist_cnn.train` prints it."""

    def table() -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            print_summary(build_model(model))
        return f"```text\n{out.getvalue()}```\n"

    return table


def search_space() -> str:
    """The knobs of `python -m mnist_cnn.search` and the values each may take, as suggest draws
    them at the seed net's budget (the widths' ranges grow with the square root of the budget,
    and are wider for separable nets)."""
    import optuna

    from mnist_cnn.study import KNOBS, WIDEST, Search, holding, suggest

    def values(drawn: optuna.distributions.BaseDistribution) -> str:
        if isinstance(drawn, optuna.distributions.CategoricalDistribution):
            return " or ".join({True: "on", False: "off"}.get(c, str(c)) for c in drawn.choices)
        text = f"{drawn.low:g} to {drawn.high:g}"
        if getattr(drawn, "log", False):
            return text + ", log-uniform"
        return text + (f", in steps of {drawn.step:g}" if drawn.step not in (None, 1) else "")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    drawn = {}
    for separable in (False, True):
        sampler = holding({"separable": separable}, optuna.samplers.RandomSampler(seed=0))
        trial = optuna.create_study(sampler=sampler).ask()
        suggest(trial, Search())
        drawn[separable] = {name: values(d) for name, d in trial.distributions.items()}
    rows = ["| knob | what it is | values at 9,032 parameters |", "|---|---|---|"]
    for name, plain in drawn[False].items():
        separable = drawn[True][name]
        rows.append(
            f"| `{name}` | {KNOBS[name]} | {plain}{'' if separable == plain else f' (separable: {separable})'} |"
        )
    rows.append(
        f"| (`w5`) | the last 3x3 convolution's channels | what the parameter budget leaves, at most {WIDEST} |"
    )
    return "\n".join(rows) + "\n"


TABLES: dict[str, Callable[[], str]] = {
    "search-space": search_space,
    "train-flags": train_flags,
    "weights": weights,
    **{f"summary-{model}": summary(model) for model in ("seed", "improved", "separable")},
}


def regenerate(text: str) -> str:
    """text with every generated block made afresh."""

    def fill(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise SystemExit(f"no table called {name!r}; there are {', '.join(TABLES)}")
        return f"{match.group(1)}{TABLES[name]()}{match.group(4)}"

    return BLOCK.sub(fill, text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    args = p.parse_args()
    stale = []
    for path in DOCS:
        text = path.read_text()
        fresh = regenerate(text)
        if fresh != text:
            stale.append(str(path.relative_to(REPO)))
            if not args.check:
                path.write_text(fresh)
    if args.check and stale:
        sys.exit(f"stale generated tables in {', '.join(stale)}: run python scripts/doc_tables.py")
    print(f"{'stale' if stale else 'up to date'}: {', '.join(stale) or 'every generated table'}")


if __name__ == "__main__":
    main()
