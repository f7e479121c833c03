"""Ctrl-C and SIGTERM: a fit stops with what it trained, whenever the signal comes.

The command line's answer to a stop at one moment is tested in test_cli.py and
the processes' in test_processes.py; here the signal comes at many moments of a
run (the interpreter starting, the imports, the data being made, the
calibration of threads and of worker processes, worker processes starting,
training) and every run must end, promptly, in the signal's exit status, leaving
no process and no file behind.  The library's handler of SIGTERM is tested in
process: it is installed only where it may be, and the old one is put back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import backprop_core as bc
from backprop_core import termination
from backprop_core.datasets import flower
from conftest import COMMAND, lecture

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process list from /proc")

#: When the signal is sent: ``(after, seconds)``, seconds after the start (after=None) or after
#: the line of standard output that begins with ``after``: "training " is printed as the fit
#: begins with the calibration (of threads, then of worker processes, at m = 200,000), "Cost
#: after iteration 0" once training runs.  Lines, not clocks alone: on a loaded machine the
#: calibration may take from 2 to 10 s.
MOMENTS = [(None, 0.0), (None, 0.5), (None, 1.5), (None, 3.0), ("training ", 0.0), ("training ", 0.3),
           ("training ", 1.0), ("Cost after iteration 0", 0.0), ("Cost after iteration 0", 0.5)]


def _group(group: int) -> set:
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[2]) == group:
                    pids.add(int(pid))
        except (OSError, IndexError, ValueError):  # it ended while we looked
            pass
    return pids


def _ends_empty(group: int, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while _group(group):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _interrupted_while_python_starts(status: int, err: str) -> bool:
    """Ctrl-C after the interpreter took SIGINT over but before it finished starting (importing
    ``site``, which runs the venv's path files): CPython itself ends with status 1 and "Fatal Python
    error: init_import_site", before the first line of the program.  Seen once in a suite run on a
    loaded machine (load 5, startup slowed to tens of milliseconds); no code of ours can run there."""
    return status == 1 and err.startswith("Fatal Python error: init_import_site") and \
        err.rstrip().endswith("KeyboardInterrupt")


@linux_only
@pytest.mark.parametrize("signum, moments", [
    pytest.param(signal.SIGINT, MOMENTS, id="ctrl-c"),
    pytest.param(signal.SIGTERM, MOMENTS[2::3], id="sigterm"),
])
def test_a_signal_at_any_moment_ends_the_run_with_its_status_and_nothing_left(tmp_path, children, signum, moments):
    for n, (after, delay) in enumerate(moments):
        when = f"{delay} s after {after or 'the start'!r}"
        folder = tmp_path / str(n)
        folder.mkdir()
        run = children([*COMMAND, "train", "--m", "200000", "--iterations", "100000000", "--save", folder / "m.npz"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       start_new_session=True)  # a group of its own, as a shell gives a command line
        while after is not None and not (line := run.stdout.readline()).startswith(after):
            assert line, f"{after!r} was never printed: {run.stderr.read()}"
        time.sleep(delay)
        os.killpg(run.pid, signum)  # as a terminal's Ctrl-C and a service's stop send it: to the whole group
        try:
            out, err = run.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{signal.Signals(signum).name} {when} was lost: the run went on")
        # -signum: the signal came before Python took it over, and ended the process as it should
        assert run.returncode in (128 + signum, -signum) or _interrupted_while_python_starts(run.returncode, err), \
            f"{when}: status {run.returncode}: {err}"
        assert _ends_empty(run.pid), f"{when}: a worker process outlived the run"
        if "training " in err and " after " in err:  # stopped in training: the kept parameters were saved
            assert "model saved to" in out, f"{when}: {out} {err}"
            bc.BackpropClassifier.load(folder / "m.npz")
        assert sorted(p.name for p in folder.iterdir()) in ([], ["m.npz"]), f"{when}: a temporary file was left"
        assert not [name for name in os.listdir("/dev/shm") if name.startswith(f"bcore_{run.pid}n")], \
            f"{when}: shared memory was left"


# -- the library's handler ----------------------------------------------------------------------

def _terminate_at(iteration):
    def callback(i, J):
        if i >= iteration:
            # SIGTERM's default action would end the test run itself: send it only where it is handled
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "no SIGTERM handler during the fit"
            os.kill(os.getpid(), signal.SIGTERM)
    return callback


def test_sigterm_during_a_fit_stops_it_as_ctrl_c_does_and_the_default_comes_back():
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    model = lecture(max_iter=100_000, cost_every=10)
    X, Y = flower()
    with pytest.raises(bc.TrainingInterrupted, match=r"terminated \(SIGTERM\) after 30 ") as stop:
        model.fit(X.T, Y[0], callback=_terminate_at(30))
    assert stop.value.signum == signal.SIGTERM and stop.value.iteration == 30
    assert model.n_iter_ == 30, "the model keeps the parameters of the last completed iteration"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_program_that_handles_sigterm_keeps_its_handler():
    told = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: told.append(signum))
    try:
        X, Y = flower()
        model = lecture(max_iter=200, cost_every=10).fit(X.T, Y[0], callback=_terminate_at(30))
        assert told, "the program's own handler was called"
        assert model.n_iter_ == 200, "and the fit went on, as the program's handler decided"
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_fit_outside_the_main_thread_leaves_signals_alone():
    seen = []

    def fit():
        with termination.terminate_as_interrupt():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=fit)
    thread.start()
    thread.join(timeout=60)
    assert seen == [signal.SIG_DFL]
