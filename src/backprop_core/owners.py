"""Whose is a leftover? The tag a process writes into the names of what it may leave behind.

A temporary file (:mod:`backprop_core.atomic`) and a shared-memory segment
(:mod:`backprop_core.processes`) carry their maker's tag, ``<pid>n<namespace>``,
so that a later process can remove what a dead maker left.  A pid means a
process only in its own pid namespace: a folder or /dev/shm shared between
containers holds other namespaces' files, whose pids name nothing here, and
those are never touched.
"""

from __future__ import annotations

import os

#: The tag's pattern, for a regular expression: the pid, then ``n`` and the namespace where known.
TAG = r"(\d+)(?:n(\d+))?"


def pid_namespace() -> int | None:
    """The number of this process's pid namespace (Linux), or None where the OS does not say."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def tag() -> str:
    """This process's tag: ``<pid>n<namespace>``, or ``<pid>`` where the namespace is unknown."""
    namespace = pid_namespace()
    return f"{os.getpid()}" if namespace is None else f"{os.getpid()}n{namespace}"


def alive(pid: int) -> bool:
    """Does process ``pid`` run (in this process's view of the machine)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process: alive
        return pid > 0
    return True


def maker_ended(pid: str, namespace: str | None) -> bool:
    """Has the maker of a tagged leftover ended?  ``pid`` and ``namespace`` are :data:`TAG`'s groups.

    Only a tag of this pid namespace can say so: an untagged namespace (an older
    name, another OS) or another namespace's tag counts as a maker still running.
    """
    here = pid_namespace()
    return here is not None and namespace is not None and int(namespace) == here and not alive(int(pid))
