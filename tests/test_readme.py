"""The README as a reader follows it: every block run in order, every number traced to its source.

Python blocks and shell commands run in document order in one fresh folder
(tests/doc_blocks.py, shared with the documentation pages' test),
each in its own process, as a reader pasting them would.  A comment
``# prints: TEXT`` in a Python block is a claim about its output, checked.
The commands that draw docs/flower.png and docs/sweep.png are run as written
and their JSON compared with the committed JSON, which the README's numbers
must match.  The command-line reference is compared with what the parser
prints; ``python tests/test_readme.py`` rewrites it after the parser changes.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess

import pytest

from conftest import COMMAND
from doc_blocks import FIGURES, ROOT, Page, blocks, claims, committed, flower_sentence, sweep_table

README = ROOT / "README.md"
COLUMNS = "100"

#: Commands of the README that this test does not run, and why.
NOT_RUN = {
    "pip install": "installing: the test runs in the environment that install made",
    "python3 -m pytest": "the test suite itself",
    "python bench/": "a benchmark: minutes of measurement on a quiet machine; its results are committed",
}
#: The two set-up commands, exactly (.ci/run runs the second after installing torch).
SET_UP = ["pip install . && backprop-core train", 'pip install -e ".[test]" && python3 -m pytest']


PAGE = Page(README.read_text(), NOT_RUN)
ORDER = PAGE.steps
PYTHON = PAGE.python
#: What each Python block says it prints (``# prints: ...`` comments), for the blocks that say.
CLAIMS = {f"python-{i + 1}": claims(body) for i, body in enumerate(PYTHON)}
SHELL = PAGE.shell


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """Every step run in order in one fresh folder: ``{step: CompletedProcess}`` and the folder."""
    folder = tmp_path_factory.mktemp("reader")
    (folder / "docs").mkdir()
    return folder, PAGE.run(folder)


# -- every block runs, and says what it prints ---------------------------------------------

@pytest.mark.slow  # runs the README in a fresh folder (the module's set-up took 104 s under --durations)
@pytest.mark.parametrize("body", PYTHON, ids=[f"python-{i + 1}" for i in range(len(PYTHON))])
def test_python_block_runs(reader, body):
    out = reader[1][body]
    assert out.returncode == 0, out.stderr


@pytest.mark.slow  # runs the README in a fresh folder (the module's set-up took 104 s under --durations)
@pytest.mark.parametrize("block", [name for name, claims in CLAIMS.items() if claims])
def test_python_block_prints_what_its_comments_say(reader, block):
    body, claims = PYTHON[int(block.split("-")[1]) - 1], CLAIMS[block]
    printed = reader[1][body].stdout.splitlines()
    for claim in claims:
        assert claim in printed, (claim, printed)


@pytest.mark.slow  # runs the README in a fresh folder (the module's set-up took 104 s under --durations)
@pytest.mark.parametrize("command", SHELL)
def test_command_runs_without_error(reader, command):
    out = reader[1][command]
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr


def test_every_command_is_run_or_says_why_not():
    assert {PAGE.not_run_reason(c) for c in PAGE.skipped} == set(NOT_RUN.values())  # no excuse unused
    assert all(c.startswith(("backprop-core", "pip install", "python3 -m pytest", "python bench/"))
               for lang, c in ORDER if lang == "sh")


def test_set_up_is_the_two_commands_and_ci_runs_the_second():
    section = README.read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert [body.strip() for lang, body in blocks(section) if lang == "sh"] == SET_UP
    assert SET_UP[1] in (ROOT / ".ci" / "run").read_text().splitlines()


# -- the numbers: from the commands that draw the figures -------------------------------------

@pytest.mark.slow  # runs the README in a fresh folder (the module's set-up took 104 s under --durations)
@pytest.mark.parametrize("name", FIGURES)
def test_figure_commands_are_in_the_readme_and_draw_their_figure(reader, name):
    assert FIGURES[name] in SHELL
    assert (reader[0] / "docs" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # runs the README in a fresh folder (the module's set-up took 104 s under --durations)
def test_flower_run_gives_the_committed_numbers(reader):
    again, kept = json.loads((reader[0] / "docs" / "flower.json").read_text()), committed("flower")
    for key in ("training_accuracy", "baseline_training_accuracy", "iterations", "hidden", "learning_rate"):
        assert again[key] == kept[key], key
    assert again["final_cost"] == pytest.approx(kept["final_cost"], rel=1e-6)


@pytest.mark.slow  # runs the README in a fresh folder (the module's set-up took 104 s under --durations)
def test_sweep_run_gives_the_committed_numbers(reader):
    again, kept = json.loads((reader[0] / "docs" / "sweep.json").read_text()), committed("sweep")
    assert [(r["hidden"], r["training_accuracy"]) for r in again["results"]] == \
        [(r["hidden"], r["training_accuracy"]) for r in kept["results"]]
    assert (again["iterations"], again["learning_rate"]) == (kept["iterations"], kept["learning_rate"])


def test_readme_quotes_the_committed_flower_numbers():
    assert flower_sentence(committed("flower")) in README.read_text()


def test_readme_quotes_the_committed_sweep_table():
    sentence, table = sweep_table(committed("sweep"))
    assert sentence in README.read_text() and table in README.read_text()


# -- the reference: the parser's own words --------------------------------------------------

MARKERS = {
    "usage": ("<!-- command-line reference: generated from the parser by `python tests/test_readme.py`; do not edit -->",
              "<!-- end of the command-line reference -->"),
    "help": ("<!-- full help: generated from the parser by `python tests/test_readme.py`; do not edit -->",
             "<!-- end of the full help -->"),
}
SUBCOMMANDS = ("train", "sweep", "predict", "backends")


@functools.cache
def help_text(command) -> str:
    env = {**os.environ, "COLUMNS": COLUMNS}
    out = subprocess.run([*COMMAND, command, "--help"], capture_output=True, text=True, env=env, timeout=300,
                         check=True)
    return out.stdout


@functools.cache
def generated() -> dict:
    """The README's generated sections, from ``--help`` of every command at 100 columns."""
    helps = {c: help_text(c).rstrip() for c in SUBCOMMANDS}
    usage = "\n\n".join(h.split("\n\n")[0] for h in helps.values())
    full = "\n\n".join(f"$ backprop-core {c} --help\n{h}" for c, h in helps.items())
    return {"usage": f"```text\n{usage}\n```", "help": f"```text\n{full}\n```"}


def section(text, name) -> str:
    begin, end = MARKERS[name]
    return text.split(begin + "\n", 1)[1].split("\n" + end, 1)[0]


@pytest.mark.parametrize("name", MARKERS)
def test_command_line_reference_is_what_the_parser_prints(name):
    assert section(README.read_text(), name) == generated()[name]


def test_usage_names_every_option_of_every_command():
    usage = section(README.read_text(), "usage")
    for command in SUBCOMMANDS:
        options = set(re.findall(r"^  (--[\w-]+)", help_text(command), re.M)) - {"--help"}
        block = usage.split(f"usage: backprop-core {command} ", 1)[1].split("usage: ", 1)[0]
        assert options <= set(re.findall(r"--[\w-]+", block)), command


# -- nothing outside the repository ----------------------------------------------------------

def test_every_link_and_image_is_in_the_repository():
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert local and all((ROOT / t).exists() for t in local), [t for t in local if not (ROOT / t).exists()]
    assert "DESIGN" not in text


if __name__ == "__main__":  # rewrite the generated sections from the parser
    text = README.read_text()
    for name, body in generated().items():
        text = text.replace(section(text, name), body)
    README.write_text(text)
    print("README.md: command-line reference regenerated")
