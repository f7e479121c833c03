"""The documentation site: built with warnings as errors, every code block run, every number traced.

The site (mkdocs.yml, pages under docs/) is built with ``mkdocs build --strict``
into a temporary folder, as CI builds it.  Every page's Python blocks and shell
commands run in document order in a fresh folder (tests/doc_blocks.py, as for
the README), and their ``# prints:`` claims are checked.  The commands that draw
the tutorial's figures are run as written and their JSON compared with the
committed JSON, which the tutorial's numbers must match; the benchmark numbers the
pages quote are compared with the committed tables they come from.  The
command-line page's synopsis and reference are written from the parser when the
site is built, so a new option needs no regeneration; they are compared here with
what the installed ``backprop-core`` prints.  The API reference is checked to
document every name ``backprop_core`` exports.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import COMMAND
from doc_blocks import FIGURES, ROOT, Page, blocks, claims, committed, flower_sentence, sweep_table

DOCS = ROOT / "docs"
#: Commands of the pages that this test does not run, and why.
NOT_RUN = {
    "pip install": "installing: the test runs in the environment that install made",
    "python3 -m pytest": "the test suite itself",
    "python bench/": "a benchmark: minutes of measurement on a quiet machine; its results are committed",
}
PAGES = {str(path.relative_to(DOCS)): Page(path.read_text(), NOT_RUN)
         for path in sorted(DOCS.rglob("*.md")) if "_hooks" not in path.parts}
PYTHON = {f"{name}-python-{i + 1}": (name, body) for name, page in PAGES.items() for i, body in enumerate(page.python)}
SHELL = {f"{name}: {command}": (name, command) for name, page in PAGES.items() for command in page.shell}
SITE_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _hook(name):
    """One of the site's hooks (docs/_hooks), imported as mkdocs imports it."""
    spec = importlib.util.spec_from_file_location(f"hook_{name}", DOCS / "_hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the site builds, with warnings as errors ---------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site as ``mkdocs build --strict`` writes it: the folder and the build's output."""
    for package in SITE_PACKAGES:
        pytest.importorskip(package, reason=f"{package} is not installed: pip install -e '.[docs]'")
    folder = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about MkDocs 2 is news, not a fault
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    return folder, out


def test_site_builds_with_warnings_as_errors(site):
    folder, out = site
    assert out.returncode == 0, out.stderr[-4000:]
    assert "WARNING" not in out.stderr, out.stderr[-4000:]
    assert (folder / "index.html").exists()


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:\n", 1)[1]
    assert set(re.findall(r": (\S+\.md)$", nav, re.M)) == set(PAGES) | {"cli.md"}


def test_site_loads_nothing_from_outside(site):
    # Readable offline: no web fonts, stylesheets or scripts from another host.
    folder = site[0]
    fetched = re.compile(r"""<(?:link|script|img)\b[^>]*\b(?:href|src)=["']?(?:https?:)?//""", re.I)
    for page in folder.rglob("*.html"):
        assert not fetched.search(page.read_text()), page
    for sheet in folder.rglob("*.css"):
        assert not re.search(r"@import\s+url\(\s*['\"]?(?:https?:)?//", sheet.read_text()), sheet


def test_api_reference_documents_every_name_the_package_exports(site):
    import backprop_core

    anchors = set()
    for page in (site[0] / "reference").rglob("*.html"):
        anchors |= {a.rsplit(".", 1)[-1] for a in re.findall(r'id="([\w.]+)"', page.read_text())}
    assert set(backprop_core.__all__) <= anchors, sorted(set(backprop_core.__all__) - anchors)


def test_docstrings_show_no_restructuredtext_marks(site):
    for page in (site[0] / "reference").rglob("*.html"):
        assert not re.search(r":(?:func|class|meth|mod|attr|exc):<code>|::</p>", page.read_text()), page


# -- the command-line page: the parser's own words ----------------------------------------------

@functools.cache
def help_text(argv: tuple) -> str:
    env = {**os.environ, "COLUMNS": _hook("cli_reference").COLUMNS}
    out = subprocess.run([*COMMAND, *argv, "--help"], capture_output=True, text=True, env=env, timeout=300,
                         check=True)
    return out.stdout.rstrip()


def test_command_line_page_is_what_each_command_prints():
    texts = _hook("cli_reference").help_texts()
    assert set(texts) == {"", "train", "sweep", "predict", "backends"}
    for command, text in texts.items():
        assert text == help_text((command,) if command else ()), command


def test_command_line_page_is_in_the_site(site):
    page = (site[0] / "cli" / "index.html").read_text()
    for command in ("train", "sweep", "predict", "backends"):
        assert f"$ backprop-core {command} --help" in page
        assert f"usage: backprop-core {command} " in page.split('id="what-a-run-shows"')[0]  # the synopsis
    assert "--batch-size" in page and "--proba" in page
    assert "generated from the parser when the site is built --" not in page  # both markers filled


def test_command_line_page_keeps_its_hand_written_part_and_both_markers():
    hook, text = _hook("cli_reference"), (DOCS / "cli.md").read_text()
    assert text.count(hook.SYNOPSIS) == 1 and text.count(hook.REFERENCE) == 1
    assert "## What a run shows" in text and "## Your own data" in text


def test_synopsis_names_every_option_of_every_command():
    usage = _hook("cli_reference").synopsis(_hook("cli_reference").help_texts())
    for command in ("train", "sweep", "predict", "backends"):
        options = set(re.findall(r"^  (--[\w-]+)", help_text((command,)), re.M)) - {"--help"}
        block = usage.split(f"usage: backprop-core {command} ", 1)[1].split("usage: ", 1)[0]
        assert options <= set(re.findall(r"--[\w-]+", block)), command


# -- every block runs, and says what it prints --------------------------------------------------

@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """``reader(page, step)``: the step's process, each page's steps run in order in a fresh folder of its own.

    ``reader.folders[page]`` is that folder; it has a ``docs`` folder, as the repository's root has,
    where the tutorial's figure commands write.
    """
    readers, folders = {}, {}

    def result(name, step):
        if name not in readers:
            folders[name] = tmp_path_factory.mktemp(name.replace("/", "-"))
            (folders[name] / "docs").mkdir()
            readers[name] = PAGES[name].reader(folders[name])
        return readers[name](step)

    result.folders = folders
    return result


@pytest.mark.parametrize("block", PYTHON)
def test_python_block_runs(reader, block):
    name, body = PYTHON[block]
    if PAGES[name].not_run_page:
        compile(body, block, "exec")  # a page too slow for the suite still holds Python
        return
    out = reader(name, body)
    assert out.returncode == 0, out.stderr[-4000:]


@pytest.mark.parametrize("block", [block for block, (name, body) in PYTHON.items()
                                   if claims(body) and not PAGES[name].not_run_page])
def test_python_block_prints_what_its_comments_say(reader, block):
    name, body = PYTHON[block]
    printed = reader(name, body).stdout.splitlines()
    for claim in claims(body):
        assert claim in printed, (claim, printed)


@pytest.mark.parametrize("step", [step for step, (name, _) in SHELL.items() if not PAGES[name].not_run_page])
def test_command_runs_without_error(reader, step):
    name, command = SHELL[step]
    out = reader(name, command)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-4000:]


def test_every_command_is_run_or_says_why_not():
    skipped = {reason for page in PAGES.values() for c in page.skipped for reason in [page.not_run_reason(c)]}
    assert skipped == set(NOT_RUN.values())  # no excuse unused
    assert all(c.startswith(("backprop-core", "pip install", "python3 -m pytest", "python bench/"))
               for page in PAGES.values() for lang, c in page.steps if lang == "sh")


def test_every_page_runs_unless_it_says_why():
    # A page too slow for the suite says so in a comment that names the reason.
    assert Page("<!-- not run by the tests: an hour of training -->\n").not_run_page == "an hour of training"


# -- the lecture's numbers: the committed JSON's -----------------------------------------------

def test_tutorial_quotes_the_committed_numbers():
    text = (DOCS / "tutorial.md").read_text()
    sentence, table = sweep_table(committed("sweep"))
    assert flower_sentence(committed("flower")) in text
    assert sentence in text and table in text
    assert "(flower.png)" in text and "(sweep.png)" in text


@pytest.mark.slow  # the flower's 10,000 iterations and the sweep's seven networks, through the command line
@pytest.mark.parametrize("name", FIGURES)
def test_figure_commands_are_in_the_tutorial_and_draw_their_figure(reader, name):
    assert FIGURES[name] in PAGES["tutorial.md"].shell
    out = reader("tutorial.md", FIGURES[name])
    assert out.returncode == 0, out.stderr[-4000:]
    assert (reader.folders["tutorial.md"] / "docs" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # the flower's 10,000 iterations through the command line
def test_flower_run_gives_the_committed_numbers(reader):
    reader("tutorial.md", FIGURES["flower"])
    again = json.loads((reader.folders["tutorial.md"] / "docs" / "flower.json").read_text())
    kept = committed("flower")
    for key in ("training_accuracy", "baseline_training_accuracy", "iterations", "hidden", "learning_rate"):
        assert again[key] == kept[key], key
    assert again["final_cost"] == pytest.approx(kept["final_cost"], rel=1e-6)


@pytest.mark.slow  # the sweep's seven networks through the command line
def test_sweep_run_gives_the_committed_numbers(reader):
    reader("tutorial.md", FIGURES["sweep"])
    again = json.loads((reader.folders["tutorial.md"] / "docs" / "sweep.json").read_text())
    kept = committed("sweep")
    assert [(r["hidden"], r["training_accuracy"]) for r in again["results"]] == \
        [(r["hidden"], r["training_accuracy"]) for r in kept["results"]]
    assert (again["iterations"], again["learning_rate"]) == (kept["iterations"], kept["learning_rate"])


# -- the benchmarks' numbers: the committed tables' ----------------------------------------------

RESULTS = ROOT / "bench" / "results"


def _rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the Markdown table under the line starting with ``header``."""
    lines = text.split(header, 1)[1].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_performance_quotes_the_committed_processes_table():
    committed_text = (RESULTS / "cpu-2026-12-07" / "processes.md").read_text()
    page = (DOCS / "performance.md").read_text()
    kept = _rows(committed_text, "| shape | m | one thread |")
    quoted = _rows(page, "| shape | m | one thread |")
    # The page drops the chunk sizes, spreads and load column; every median and ratio is the file's.
    assert quoted == [[shape, m, *(c.split(" (")[0] for c in cells), ratio]
                      for shape, m, *cells, ratio, load in kept]
    summary = committed_text.strip().splitlines()[-1]
    assert summary.startswith("Processes win by 15% or more at 2 of 11 points")
    assert f'"{summary}"' in " ".join(page.split())
    assert "`bench/results/cpu-2026-12-07/processes.md`" in page


def test_performance_quotes_the_committed_chunks_table():
    # Each row: the whole batch's milliseconds, and each mode's best (bold in the file) with its chunks.
    committed_text = (RESULTS / "cpu-2026-11-28" / "chunks.md").read_text()
    page = (DOCS / "performance.md").read_text()
    counts = ["1", "2", "4", "8", "16", "32", "64", "128", "256"]
    best = {}
    for shape in ("2-4-1", "64-64-1"):
        for m, mode, *cells in _rows(committed_text.split(f"## {shape}", 1)[1], "| m | mode |"):
            chunks = next(i for i, c in enumerate(cells[:-1]) if c.startswith("**"))
            best[(shape, m, mode)] = f"{cells[chunks].strip('*')} ({counts[chunks]})", cells[-1]
    for row in _rows(page, "| shape, m | whole batch |"):
        shape, m = row[0].split(", ")
        numpy_best, whole = best[(shape, m, "numpy, chunked")]
        dask_best, _ = best[(shape, m, "dask, threads")]
        assert row[1:] == [whole, numpy_best, dask_best], row


def test_performance_quotes_the_committed_headline_throughputs():
    # Each headline cell is the committed table's examples/s for that entry, at that shape's largest common m.
    committed_text = (RESULTS / "cpu-2026-11-28" / "table.md").read_text()
    columns = ["numpy", "numpy:equations", "torch", "jax", "dask", "array_api_strict", "torch-nn (peer)",
               "sklearn-mlp (peer)"]
    quoted = _rows((DOCS / "performance.md").read_text(), "| shape, m | numpy | numpy, the equations |")
    assert len(quoted) == 3
    for shape_m, *cells in quoted:
        shape, power = shape_m.split(", ")
        section = committed_text.split(f"## {shape}, m = ", 1)[1]
        assert section.split("\n", 1)[0].endswith(f"({power})"), shape_m
        throughput = {row[0]: row[2] for row in _rows(section, "| entry | device | examples/s |")}
        assert [cell.strip("*") for cell in cells] == [throughput[c] for c in columns], shape_m


def test_estimator_page_quotes_the_committed_defaults_table():
    # The digits and 200k x 20 accuracies, the lecture's digits and the load it ran under are defaults.md's.
    committed_text = (RESULTS / "cpu-2026-12-07" / "defaults.md").read_text()
    rows = {row[0]: row for row in _rows(committed_text, "| data set | m |")}
    # Accuracy of MLPClassifier(), of the practitioner's settings, of the lecture's: the columns' first numbers.
    digits, big = ([cell.split(" / ")[0] for cell in rows[name][2:5]] for name in ("digits", "classification 200k x 20"))
    assert len(rows) == 6 and all(row[-2:] == ["yes", "yes"] for row in rows.values())  # "on all six"
    assert digits[0] == digits[1] and big[0] == big[1]  # "for both"
    load = re.search(r"load average ([\d.]+) at the start and ([\d.]+) at the end", committed_text)
    page = " ".join((DOCS / "estimator.md").read_text().split())
    for quoted in (f"digits {digits[0]}% for both", f"200k x 20 {big[0]}% for both", f"went from {load[1]} to {load[2]}",
                   f"the lecture's settings reach {digits[2]}% on digits", "`bench/results/cpu-2026-12-07/defaults.md`"):
        assert quoted in page, quoted


def test_guide_quotes_the_committed_comparison_with_mlp():
    # The guide's breast-cancer settings and 96.5% are the committed table's (bench/vs_mlp.py).
    table = (ROOT / "bench" / "results" / "cpu-2026-11-28" / "vs_mlp.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| breast cancer (scaled) |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2:5] == ["16", "96.5 %", "96.5 % (adam)"], cells
    assert "lr 0.5, 500 iterations (chosen by CV" in table and "init xavier; test accuracy 96.5 %" in table
    guide = (DOCS / "guide.md").read_text()
    assert "`bench/results/cpu-2026-11-28/vs_mlp.md`, has 96.5% on this\nsplit" in guide
    assert "print(f\"test accuracy {model.score(X_test, y_test):.3f}\")    # prints: test accuracy 0.965" in guide


def test_home_page_sets_up_with_the_readmes_two_commands():
    def set_up(text):
        section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
        return [body.strip() for lang, body in blocks(section) if lang == "sh"]

    assert set_up((DOCS / "index.md").read_text()) == set_up((ROOT / "README.md").read_text())


def test_performance_page_quotes_the_committed_cpu_fused_run():
    # The fused CPU step's and the numpy plan's throughputs on 2 threads are cpu_fused_ab.txt's table's.
    text = (RESULTS / "cpu-2026-12-06" / "cpu_fused_ab.txt").read_text()
    rows = {row[0]: row for row in _rows(text, "| m | numpy plan |")}
    page = " ".join((DOCS / "performance.md").read_text().split())
    big, small = rows["2^21"], rows["2^16"]
    for quoted in (f"it did {big[5].removesuffix(' M/s')} M examples/s at m = 2^21 against {big[1]}",
                   f"and {small[5].removesuffix(' M/s')} against {small[1]} at 2^16"):
        assert quoted in page, quoted
