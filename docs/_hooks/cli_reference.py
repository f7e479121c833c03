"""MkDocs hook: the command-line reference page, written from the parser at every build.

Each command's ``--help`` is what ``backprop-core COMMAND --help`` prints at
100 columns (tests/test_docs.py compares the two), so the page cannot drift
from the program.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os

PAGE = "cli.md"
COLUMNS = "100"

INTRO = """\
# Command line

`backprop-core` trains on a built-in dataset or on your own file and reports (`train`), trains one
network per hidden-layer size (`sweep`), predicts with a saved model (`predict`), and lists the
array libraries (`backends`). Every mistake in the options, the files or the data is one line on
standard error with exit status 2. The [practitioner's guide](guide.md#the-command-line) shows the
commands at work; this page is each command's `--help`, generated from the parser when the site is
built.
"""


def _printed_help(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """What the parser prints for ``argv`` (ending in ``--help``), at the page's width."""
    out, width = io.StringIO(), os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = COLUMNS  # argparse wraps to the terminal's width, read from COLUMNS
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            parser.parse_args(argv)
    finally:
        if width is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = width
    return out.getvalue().rstrip()


def help_texts() -> dict[str, str]:
    """``{"": the program's --help, "train": train's --help, ...}``, from the parser itself."""
    from backprop_core.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {"": _printed_help(parser, ["--help"]),
            **{name: _printed_help(parser, [name, "--help"]) for name in commands}}


def page() -> str:
    sections = [INTRO]
    for name, text in help_texts().items():
        title = f"backprop-core {name}".strip()
        sections.append(f"## `{title}`\n\n```text\n$ {title} --help\n{text}\n```\n")
    return "\n".join(sections)


def on_files(files, config):
    from mkdocs.structure.files import File  # here, so the tests compare the help without MkDocs

    files.append(File.generated(config, PAGE, content=page()))
    return files
