"""The README as a newcomer reads it: short, every block run in order, every link in the repository.

Python blocks and shell commands run in document order in one fresh folder
(tests/doc_blocks.py, shared with the documentation pages' test), each in its own
process, as a reader pasting them would.  A comment ``# prints: TEXT`` in a Python
block is a claim about its output, checked.  The rest of the documentation (the
figures and their numbers, the command-line reference generated from the parser)
lives in docs/ and is checked by tests/test_docs.py.
"""

from __future__ import annotations

import re

import pytest

from doc_blocks import ROOT, Page, blocks, claims

README = ROOT / "README.md"
#: A newcomer reads it in two minutes; the rest is in docs/.
MOST_LINES = 120

#: Commands of the README that this test does not run, and why.
NOT_RUN = {
    "pip install": "installing: the test runs in the environment that install made",
    "python3 -m pytest": "the test suite itself",
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
    """``reader(step)``: the step's process, the steps before it run first, in one fresh folder."""
    return PAGE.reader(tmp_path_factory.mktemp("reader"))


# -- short, and every block runs and says what it prints ------------------------------------

def test_readme_reads_in_two_minutes():
    assert len(README.read_text().splitlines()) <= MOST_LINES


@pytest.mark.parametrize("body", PYTHON, ids=[f"python-{i + 1}" for i in range(len(PYTHON))])
def test_python_block_runs(reader, body):
    out = reader(body)
    assert out.returncode == 0, out.stderr[-4000:]


@pytest.mark.parametrize("block", [name for name, claims in CLAIMS.items() if claims])
def test_python_block_prints_what_its_comments_say(reader, block):
    body, claims = PYTHON[int(block.split("-")[1]) - 1], CLAIMS[block]
    printed = reader(body).stdout.splitlines()
    for claim in claims:
        assert claim in printed, (claim, printed)


@pytest.mark.parametrize("command", SHELL)
def test_command_runs_without_error(reader, command):
    out = reader(command)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-4000:]


def test_every_command_is_run_or_says_why_not():
    assert {PAGE.not_run_reason(c) for c in PAGE.skipped} == set(NOT_RUN.values())  # no excuse unused
    assert all(c.startswith(("backprop-core", "pip install", "python3 -m pytest"))
               for lang, c in ORDER if lang == "sh")


def test_set_up_is_the_two_commands_and_ci_runs_the_second():
    section = README.read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert [body.strip() for lang, body in blocks(section) if lang == "sh"] == SET_UP
    assert SET_UP[1] in (ROOT / ".ci" / "run").read_text().splitlines()
    assert '`python3 -m pytest -m "not slow"`' in section  # the fast subset, for daily work


def test_quick_start_sets_no_execution_knob():
    # How a fit is executed (chunks, workers, threads or processes, streaming) is not a newcomer's
    # first concern, and the estimator's settings are about what is learnt.
    for body in PYTHON:
        assert not re.search(r"\b(chunk_size|workers|stream|fused|parallel|iteration_timeout)=", body), body


# -- the links: into the repository, the documentation pages among them ----------------------

def test_every_link_and_image_is_in_the_repository():
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert local and all((ROOT / t).exists() for t in local), [t for t in local if not (ROOT / t).exists()]
    assert "DESIGN" not in text


def test_readme_links_every_page_of_the_site():
    # The README is the way in: each hand-written page of docs/ is a link away.
    linked = set(re.findall(r"\]\(docs/([\w/]+\.md)\)", README.read_text()))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
    assert pages <= linked, sorted(pages - linked)


if __name__ == "__main__":  # the command that once rewrote the README's reference, kept for habit's sake
    print("Nothing to regenerate: the command-line reference is no longer in README.md; docs/cli.md's\n"
          "synopsis and reference are filled from the parser at every site build (docs/_hooks/cli_reference.py).")
