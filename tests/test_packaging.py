"""What `pip install .` puts in the wheel: every package of the source tree, and the command.

An editable install (the tests' own) finds any folder on the source path, so a
package missing from pyproject.toml's list passes every other test and breaks only
a user's `pip install .`, which is what happened to `lowering/` once.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def _packages_on_disk() -> set:
    """Every folder with an __init__.py, named as a package through pyproject's package-dir."""
    found = set()
    for name, folder in {**{"backprop_core": "src/backprop_core"}, **{
            package: path for package, path in _setuptools()["package-dir"].items() if package}}.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            parts = init.parent.relative_to(base).parts
            if "__pycache__" not in parts:
                found.add(".".join((name, *parts)))
    return found


def test_every_package_of_the_source_tree_is_listed_for_the_wheel():
    assert set(_setuptools()["packages"]) == _packages_on_disk()


def test_the_command_lines_module_is_in_a_listed_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    module = project["scripts"]["backprop-core"].split(":")[0]
    assert module.rsplit(".", 1)[0] in _setuptools()["packages"]
