"""What the README and the documentation pages share: their code blocks, run as a reader runs them.

A page's Python blocks and shell commands run in document order in one fresh
folder, each in its own process, as a reader pasting them would.  A comment
``# prints: TEXT`` in a Python block is a claim about its output, checked by the
tests that use this module.  A command a test does not run is named, with the
reason, in that test's ``NOT_RUN`` (a prefix of the command and why).  A page
whose blocks are too slow for the suite says so itself, in a comment
``<!-- not run by the tests: REASON -->``; its Python blocks are then only
compiled.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
NOT_RUN_PAGE = re.compile(r"<!-- not run by the tests: (.+?) -->", re.S)
#: Where the console script and this interpreter live: first on a reader's PATH.
BIN = Path(sys.executable).parent


def blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, in document order."""
    return [(m[1], m[2]) for m in FENCE.finditer(text)]


def commands(body: str) -> list[str]:
    """The commands of a shell block: one a line, ``a && b`` as two."""
    lines = [line.split(" #")[0].strip() for line in body.splitlines()]
    return [part.strip() for line in lines if line and not line.startswith("#") for part in line.split("&&")]


def claims(body: str) -> list[str]:
    """What a Python block says it prints (its ``# prints: ...`` comments)."""
    return [claim.strip() for claim in re.findall(r"# prints: (.+)$", body, re.M)]


@dataclass
class Page:
    """A Markdown page's runnable steps: ``("python", block)`` and ``("sh", command)`` in order."""

    text: str
    not_run: dict = field(default_factory=dict)

    def __post_init__(self):
        self.steps = []
        for lang, body in blocks(self.text):
            if lang == "python":
                self.steps.append(("python", body))
            elif lang == "sh":
                self.steps += [("sh", command) for command in commands(body)]

    @property
    def not_run_page(self) -> str | None:
        """Why none of the page's blocks is run, where the page says so."""
        found = NOT_RUN_PAGE.search(self.text)
        return found and found[1]

    def not_run_reason(self, command: str) -> str | None:
        return next((why for prefix, why in self.not_run.items() if command.startswith(prefix)), None)

    @property
    def python(self) -> list[str]:
        return [body for lang, body in self.steps if lang == "python"]

    @property
    def shell(self) -> list[str]:
        """The commands that are run."""
        return [body for lang, body in self.steps if lang == "sh" and self.not_run_reason(body) is None]

    @property
    def skipped(self) -> list[str]:
        return [body for lang, body in self.steps if lang == "sh" and self.not_run_reason(body) is not None]

    def runnable(self) -> list[tuple[str, str]]:
        """The steps that are run, in order: none where the page says it is not run."""
        if self.not_run_page:
            return []
        return [(lang, body) for lang, body in self.steps if lang == "python" or self.not_run_reason(body) is None]

    def run(self, folder: Path, timeout: float = 600) -> dict:
        """Every step that is run, in order, in ``folder``: ``{step: CompletedProcess}``."""
        return {body: _run_step(lang, body, folder, timeout) for lang, body in self.runnable()}

    def reader(self, folder: Path, timeout: float = 600):
        """``result(step)``: that step's CompletedProcess, the steps before it run first, in order.

        Each test then waits for its own step, not for the whole page.
        """
        done, pending = {}, iter(self.runnable())

        def result(step):
            while step not in done:
                lang, body = next(pending)
                done[body] = _run_step(lang, body, folder, timeout)
            return done[step]

        return result


def _run_step(lang: str, body: str, folder: Path, timeout: float) -> subprocess.CompletedProcess:
    """One step in its own process, in ``folder``, with this interpreter and its scripts first on PATH."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = [sys.executable, "-c", body] if lang == "python" else ["bash", "-c", body]
    return subprocess.run(argv, capture_output=True, text=True, cwd=folder, env=env, timeout=timeout)


#: The commands that draw the lecture's figures (tests/test_docs.py runs them as docs/tutorial.md
#: gives them and compares their JSON with the committed JSON, which every page quoting the
#: numbers must match).
FIGURES = {"flower": "backprop-core train --baseline --plot docs/flower.png --json > docs/flower.json",
           "sweep": "backprop-core sweep --plot docs/sweep.png --json > docs/sweep.json"}


# -- the lecture's numbers, quoted from the committed JSON of the commands that drew the figures ---

def committed(name: str) -> dict:
    return json.loads((ROOT / "docs" / f"{name}.json").read_text())


def flower_sentence(run: dict) -> str:
    """How a page quotes docs/flower.json."""
    return (f"The flower (numpy, {run['hidden']} {run['activation']} hidden units, learning rate "
            f"{run['learning_rate']:g}, {run['iterations']:,} iterations): training accuracy "
            f"{100 * run['training_accuracy']:.1f}% (logistic regression: "
            f"{100 * run['baseline_training_accuracy']:.1f}%).")


def sweep_table(run: dict) -> str:
    """How a page quotes docs/sweep.json: its table and the sentence before it."""
    return (f"The sweep ({run['iterations']:,} iterations each, learning rate {run['learning_rate']:g}, "
            f"{run['activation']})", "| hidden units | training accuracy |\n|---|---|\n" + "".join(
                f"| {r['hidden']} | {100 * r['training_accuracy']:.1f}% |\n" for r in run["results"]))
