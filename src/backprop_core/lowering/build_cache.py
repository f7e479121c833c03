"""Generated C built once per machine: a cache of shared libraries in the user's cache folder.

A build is keyed by a hash of everything that decides its bytes: the C text,
the compiler's path and version, the flags, and what ``-march=native`` means here.  It is written atomically
(a temporary file renamed into place), then a checksum file beside it; a
library is loaded only when the checksum file exists and matches the
library's bytes, so a truncated or damaged build is rebuilt, never loaded.

The folder: ``$BACKPROP_CORE_CACHE`` if set, else ``$XDG_CACHE_HOME/backprop-core``,
else ``~/.cache/backprop-core``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import BackpropCoreError


class BuildError(BackpropCoreError, RuntimeError):
    """The C compiler is missing or refused the generated text; the message says which."""


def cache_folder() -> Path:
    """Where built libraries are kept (created on first use)."""
    given = os.environ.get("BACKPROP_CORE_CACHE")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "backprop-core"


def c_compiler() -> str | None:
    """The C compiler (gcc, then cc), or None where there is none."""
    return shutil.which("gcc") or shutil.which("cc")


@functools.lru_cache(maxsize=8)
def _version(compiler: str) -> str:
    done = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60)
    return done.stdout


@functools.lru_cache(maxsize=8)
def _native(compiler: str) -> str:
    """What ``-march=native`` means on this machine (the compiler's expanded options): a cache
    shared between machines (a network home folder) must not hand one CPU's build to another."""
    done = subprocess.run([compiler, "-march=native", "-###", "-E", "-x", "c", os.devnull],
                          capture_output=True, text=True, timeout=60)
    return "\n".join(line for line in done.stderr.splitlines() if "-march" in line)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(text: str, flags: tuple, libraries: tuple = (), what: str = "generated C") -> Path:
    """The path of ``text`` built as a shared library with ``flags`` (then ``-l`` each of
    ``libraries``): from the cache where a sound build is there, else compiled now."""
    compiler = c_compiler()
    if compiler is None:
        raise BuildError("no C compiler (gcc or cc) on this machine")
    machine = _native(compiler) if "-march=native" in flags else ""
    key = hashlib.sha256("\0".join([text, compiler, _version(compiler), machine, *flags, *libraries]).encode())
    key = key.hexdigest()[:32]
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    library, checksum = folder / f"{key}.so", folder / f"{key}.sha256"
    if library.exists() and checksum.exists() and checksum.read_text().strip() == _digest(library):
        return library
    with tempfile.TemporaryDirectory(prefix="bc-build-", dir=folder) as tmp:
        source, built = Path(tmp) / "step.c", Path(tmp) / "step.so"
        source.write_text(text)
        done = subprocess.run([compiler, *flags, "-fPIC", "-shared", "-o", str(built), str(source),
                               *(f"-l{name}" for name in libraries)], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise BuildError(f"{compiler} could not build {what}:\n{done.stderr[-2000:]}")
        data = built.read_bytes()
    checksum.unlink(missing_ok=True)  # no checksum vouches for a library being replaced
    _atomic_write(library, data)
    _atomic_write(checksum, (hashlib.sha256(data).hexdigest() + "\n").encode())
    return library


def load(text: str, flags: tuple, libraries: tuple = (), what: str = "generated C") -> ctypes.CDLL:
    """``text`` built (or found in the cache) and loaded."""
    return ctypes.CDLL(str(build(text, flags, libraries, what)))
