"""MkDocs hook: the command-line page's synopsis and reference, written from the parser at every build.

docs/cli.md is written by hand (what a run shows, examples) and holds two markers,
``SYNOPSIS`` and ``REFERENCE``; at every build the first becomes each command's
usage, the second each command's whole ``--help``, as ``backprop-core COMMAND
--help`` prints them at 100 columns (tests/test_docs.py compares the two), so the
page cannot drift from the program.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os

PAGE = "cli.md"
COLUMNS = "100"
SYNOPSIS = "<!-- synopsis: each command's usage, generated from the parser when the site is built -->"
REFERENCE = "<!-- reference: each command's --help, generated from the parser when the site is built -->"


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


def synopsis(texts: dict[str, str]) -> str:
    """Every command's usage (the first paragraph of its help), in one block."""
    usages = [text.split("\n\n")[0] for name, text in texts.items() if name]
    return "```text\n" + "\n\n".join(usages) + "\n```"


def reference(texts: dict[str, str]) -> str:
    """A section per command: its whole ``--help``."""
    sections = []
    for name, text in texts.items():
        title = f"backprop-core {name}".strip()
        sections.append(f"### `{title}`\n\n```text\n$ {title} --help\n{text}\n```\n")
    return "\n".join(sections)


def fill(markdown: str) -> str:
    """docs/cli.md with its two markers replaced by what the parser prints."""
    assert SYNOPSIS in markdown and REFERENCE in markdown, f"{PAGE} lost a marker of the generated reference"
    texts = help_texts()
    return markdown.replace(SYNOPSIS, synopsis(texts)).replace(REFERENCE, reference(texts))


def on_page_markdown(markdown, page, config, files):
    return fill(markdown) if page.file.src_uri == PAGE else markdown
