"""Every file the project writes (models, predictions, plots) is written whole or not at all.

:func:`replace_atomically` writes a new file beside the target and renames it
over the target in one step: a reader, and a run interrupted, killed or stopped
by a full disk, sees the old file or the new one, never a shorter one that looks
complete.  The new file is named ``.<target's name>.<tag>.<random>.tmp``, the
tag naming its writer (:func:`backprop_core.owners.tag`): a process killed
mid-write (SIGKILL, a power cut) cannot remove its own, so each write first
removes those of its target whose writer, in this pid namespace, no longer runs
(:func:`remove_stale`), and a model's size of litter does not stay forever.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile

from . import owners

#: The target's name in a temporary file's name is cut to this many characters, so that a
#: long name stays within a folder entry's limit (255 bytes on most file systems).
NAME_CHARS = 64


def _prefix(target: str) -> str:
    return f".{os.path.basename(target)[:NAME_CHARS]}."


def remove_stale(target) -> list:
    """Remove the temporary files of ``target`` left by writers that no longer run; returns their paths.

    A writer is known by the tag in the file's name; one that still runs (this
    process's other threads, another process saving the same file), and one of
    another pid namespace (a container sharing the folder), keeps its file.
    """
    target = os.fspath(target)
    folder, prefix = os.path.dirname(target) or os.curdir, _prefix(target)
    pattern = re.compile(re.escape(prefix) + owners.TAG + r"\.[A-Za-z0-9_]+\.tmp\Z")
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match and owners.maker_ended(match[1], match[2]):
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):  # gone already, or a folder we may not write in
                os.unlink(path)
                removed.append(path)
    return removed


def replace_atomically(target, write, *, text: bool = False, verb: str = "write") -> None:
    """Call ``write(file)`` on a new file beside ``target``, then rename it over ``target``.

    ``text``: the file is opened for text (UTF-8, newlines as given), else for
    bytes.  mkstemp creates the file with O_EXCL under a random name, so a link
    planted in the folder is never followed; os.replace renames in one step, so
    concurrent writes leave the last one whole; a link AT the target is
    replaced, its own target untouched.  The new file gets the old one's
    permission bits (or those open() gives a new file).  On any failure the
    temporary file is removed, the old file stays as it was, and an OSError
    names ``target`` ("cannot {verb} {target}: ..."), not the temporary file.
    A device or a pipe at ``target`` (/dev/null, /dev/stdout) is written into, as
    nothing may be renamed over it.
    """
    target = os.fspath(target)
    folder = os.path.dirname(target) or os.curdir
    if _write_in_place(target, write, text, verb):
        return
    remove_stale(target)
    mode = _mode_for(target)
    try:
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f"{_prefix(target)}{owners.tag()}.", suffix=".tmp")
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot {verb} {target}: {exc.strerror} (in folder {folder})") from None
    try:
        with (os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb")) as f:
            write(f)
            f.flush()
            os.chmod(temporary, mode)
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise type(exc)(exc.errno, f"cannot {verb} {target}: {exc.strerror}") from None
        raise
    _fsync_folder(folder)


def _write_in_place(target: str, write, text: bool, verb: str) -> bool:
    """Write into what is at ``target`` when it is not a file that a rename may replace: a device or
    a pipe (/dev/null, /dev/stdout, a FIFO), followed through links, which renaming would put a
    regular file in place of.  A folder is an IsADirectoryError.  False where ``target`` is a
    regular file, or nothing yet."""
    try:
        kind = os.stat(target).st_mode
    except OSError:  # nothing there yet, or a dangling link: the rename makes the file
        return False
    if stat.S_ISREG(kind):
        return False
    if stat.S_ISDIR(kind):
        raise IsADirectoryError(errno.EISDIR, f"cannot {verb} {target}: Is a directory")
    try:
        with (open(target, "w", encoding="utf-8", newline="") if text else open(target, "wb")) as f:
            write(f)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise type(exc)(exc.errno, f"cannot {verb} {target}: {exc.strerror}") from None
    return True


def _mode_for(target: str) -> int:
    """The permission bits the new file gets: the old file's, or those open() gives a new one."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode) & 0o777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    # Linux shows the umask; elsewhere it can only be read by setting it (briefly, process-wide).
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable, where the OS lets a folder be opened and synced."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
