"""Chunks on worker processes: the sums threads give, nothing left behind, failures named."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import backprop_core as bc
from backprop_core import building, planner, processes
from backprop_core.activations import ACTIVATIONS, get_activation
from backprop_core.backends import get_backend
from conftest import lecture
from backprop_core.chunked import ChunkedGradients
from backprop_core.equations import get_output
from backprop_core.initialization import initial_parameters_host
from backprop_core.training import train, with_weights

pytestmark = pytest.mark.skipif(not processes.available(), reason="worker processes need a POSIX system")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the process list from /proc and shared memory from /dev/shm")

NUMPY = get_backend("numpy")
TANH = get_activation("tanh")
OUTPUTS = [pytest.param(("sigmoid", 1), id="sigmoid-1"), pytest.param(("sigmoid", 3), id="sigmoid-3"),
           pytest.param(("softmax", 3), id="softmax-3")]


def _problem(n2, output="sigmoid", weighted=False, n0=3, n1=5, m=700, dtype="float64", seed=0):
    """X (n0, m), Y (n2, m) with the weights row under it when ``weighted``, host parameters."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n0, m)).astype(dtype)
    if output == "softmax":
        Y = np.eye(n2, dtype=dtype)[:, rng.integers(0, n2, m)]
    else:
        Y = (rng.random((n2, m)) > 0.5).astype(dtype)
    if weighted:
        Y = with_weights(Y, rng.random(m).astype(dtype) + 0.5)
    return X, Y, initial_parameters_host(n0, n1, n2, "xavier", 1)


def _on_processes(X, Y, params, activation, output="sigmoid", weighted=False, chunk_size=64, workers=3,
                  with_cost=True, **options):
    """The gradients on ``workers`` processes, and the workers' ids while they ran."""
    shape = (X.shape[0], params["W1"].shape[0], params["W2"].shape[0])
    g, out = get_activation(activation), get_output(output)
    make = building.make_gradients(NUMPY, "buffered", g, shape, "float64", chunk_size, out, weighted)
    network = processes.Network.of(shape, g, out, weighted, "float64")
    gradients = processes.ProcessChunkedGradients(make, chunk_size, backend=NUMPY, dtype="float64",
                                                  workers=workers, network=network, **options)
    with gradients.running():
        result = gradients(params, X, Y, with_cost)
        pids = gradients.pids
    return result, pids


def _on_one_thread(X, Y, params, activation, output="sigmoid", weighted=False, chunk_size=None, workers=1):
    shape = (X.shape[0], params["W1"].shape[0], params["W2"].shape[0])
    size = chunk_size or X.shape[1]
    make = building.make_gradients(NUMPY, "buffered", get_activation(activation), shape, "float64", size,
                                  get_output(output), weighted)
    gradients = ChunkedGradients(make, size, backend=NUMPY, dtype="float64", workers=workers)
    with gradients.running():
        return gradients(params, X, Y, True)


# -- the same sums ---------------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("output_n2", OUTPUTS)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_process_chunks_equal_one_pass_on_one_thread(activation, output_n2, weighted):
    output, n2 = output_n2
    X, Y, params = _problem(n2, output, weighted)
    got, pids = _on_processes(X, Y, params, activation, output, weighted)
    expected = _on_one_thread(X, Y, params, activation, output, weighted)
    assert len(pids) == 2, "two worker processes beside this one"
    for name, a, b in zip(("dW1", "db1", "dW2", "db2", "J"), got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=name)


def test_without_the_cost_the_cost_is_none():
    X, Y, params = _problem(1)
    got, _ = _on_processes(X, Y, params, "tanh", with_cost=False)
    assert got[4] is None and got[0].shape == (5, 3)


def test_two_runs_give_the_same_bits():
    X, Y, params = _problem(3, "softmax", weighted=True)
    first, _ = _on_processes(X, Y, params, "relu", "softmax", True)
    second, _ = _on_processes(X, Y, params, "relu", "softmax", True)
    for name, a, b in zip(("dW1", "db1", "dW2", "db2", "J"), first, second):
        assert np.array_equal(a, b), name


def test_processes_sum_what_threads_sum_for_the_same_plan():
    X, Y, params = _problem(1)
    got, _ = _on_processes(X, Y, params, "tanh", chunk_size=50, workers=3)
    threads = _on_one_thread(X, Y, params, "tanh", chunk_size=50, workers=3)
    for name, a, b in zip(("dW1", "db1", "dW2", "db2", "J"), got, threads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=name)


def _slowed(make, calls, seconds=0.01):
    """``make`` whose functions sleep ``seconds`` before each chunk and count the chunks in ``calls``."""
    def slowed(with_cost):
        gradients = make(with_cost)

        def run(*args):
            calls.append(1)
            time.sleep(seconds)
            return gradients(*args)
        return run
    return slowed


def _blocks_on_processes(X, Y, params, chunk_size, workers, make_wrapper=None, duplicate=False):
    """Gradients on worker processes, the calling process's chunks computed by ``make_wrapper(make)``;
    with ``duplicate``, the calling process ignores the workers' claims (computing every block again)."""
    shape = (X.shape[0], params["W1"].shape[0], params["W2"].shape[0])
    make = building.make_gradients(NUMPY, "buffered", TANH, shape, "float64", chunk_size)
    gradients = processes.ProcessChunkedGradients(
        make if make_wrapper is None else make_wrapper(make), chunk_size, backend=NUMPY, dtype="float64",
        workers=workers, network=processes.Network.of(shape, TANH, "sigmoid", False, "float64"))
    with gradients.running():
        result = gradients(params, X, Y, True)
        if duplicate:  # the workers see every block unclaimed, and so does this process, on its own copy
            shared = gradients._processes._claims
            gradients._processes._claims = np.zeros_like(shared)
            shared[:] = 0
            result = gradients(params, X, Y, True)
    return result


@pytest.mark.parametrize("workers", [2, 3])
def test_processes_give_the_bits_threads_give_for_the_same_chunks(workers):
    X, Y, params = _problem(1, m=3000)
    got = _blocks_on_processes(X, Y, params, 64, workers)
    for name, a, b in zip(("dW1", "db1", "dW2", "db2", "J"), got, _on_one_thread(X, Y, params, "tanh",
                                                                                  chunk_size=64)):
        assert np.array_equal(a, b), name


def test_a_slow_calling_process_takes_fewer_blocks_and_the_bits_stay_the_same():
    X, Y, params = _problem(1, m=4096)
    calls = []
    slowed = _blocks_on_processes(X, Y, params, 64, 2, make_wrapper=lambda make: _slowed(make, calls))
    assert len(calls) < 16, f"the slow calling process computed {len(calls)} of the 64 chunks (a static split: 32)"
    for name, a, b in zip(("dW1", "db1", "dW2", "db2", "J"), slowed, _blocks_on_processes(X, Y, params, 64, 2)):
        assert np.array_equal(a, b), name


def test_a_block_computed_twice_is_harmless():
    X, Y, params = _problem(1, m=4096)
    twice = _blocks_on_processes(X, Y, params, 64, 2, duplicate=True)
    for name, a, b in zip(("dW1", "db1", "dW2", "db2", "J"), twice, _blocks_on_processes(X, Y, params, 64, 2)):
        assert np.array_equal(a, b), name


def _fit(parallel, X, Y, params, **options):
    p = planner.plan(NUMPY, (X.shape[0], params["W1"].shape[0], Y.shape[0], X.shape[1]), "float64", TANH,
                     chunk_size=100, workers=2, parallel=parallel)
    return p, train(X, Y, NUMPY.parameters_from_host(params, "float64"), activation=TANH, learning_rate=0.5,
                    num_iterations=options.pop("num_iterations", 30), backend=NUMPY, plan=p, cost_every=10,
                    **options)


def test_a_fit_on_processes_lands_where_a_fit_on_threads_lands():
    X, Y, params = _problem(1)
    p, on_processes = _fit("processes", X, Y, params)
    _, on_threads = _fit("threads", X, Y, params)
    assert (p.parallel, p.workers) == ("processes", 2) and "2 processes" in str(p)
    for k in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(on_processes.parameters[k], on_threads.parameters[k], rtol=1e-12, err_msg=k)
    np.testing.assert_allclose([J for _, J in on_processes.history], [J for _, J in on_threads.history],
                               rtol=1e-12)


def test_nn_model_on_processes_matches_threads(flower_data):
    X, Y = flower_data
    with bc.execution_context(chunk_size=64, workers=2, parallel="threads"):
        on_threads = bc.nn_model(X, Y, 4, 40)
    with bc.execution_context(chunk_size=64, workers=2, parallel="processes"):
        on_processes = bc.nn_model(X, Y, 4, 40)
    for k in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(on_processes[k], on_threads[k], rtol=1e-12, err_msg=k)


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_the_estimator_on_processes_matches_threads(flower_data):
    X, Y = flower_data
    on_threads, on_processes = lecture(max_iter=40), lecture(max_iter=40)
    with bc.execution_context(chunk_size=64, workers=2, parallel="threads"):
        on_threads.fit(X.T, Y[0])
    with bc.execution_context(chunk_size=64, workers=2, parallel="processes"):
        on_processes.fit(X.T, Y[0])
    assert on_processes.plan_.parallel == "processes"
    for k in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(on_processes.parameters_[k], on_threads.parameters_[k], rtol=1e-12, err_msg=k)


# -- nothing left behind ---------------------------------------------------------------------------
def _workers() -> set:
    """Ids of the worker processes running anywhere under this process (read from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # ended while we read
                continue
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier}
        found |= frontier
    return {pid for pid in found if _is_worker(pid)}


def _segments(pid="self") -> set:
    """Names of the shared-memory segments (in /dev/shm) that process ``pid`` maps now: those
    it made or attached, whatever other programs on the machine do with /dev/shm meanwhile."""
    names = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/dev/shm/"):
                names.add(fields[5].strip().removesuffix(" (deleted)").removeprefix("/dev/shm/"))
    return names


def _left(segments) -> set:
    """Those of ``segments`` still in /dev/shm: shared memory not released."""
    return {name for name in segments if os.path.exists(f"/dev/shm/{name}")}


class _Watch:
    """A callback that records the workers and segments alive at the first cost read, then acts."""

    def __init__(self, act=None, at=1):
        self.act, self.at, self.reads = act, at, 0
        self.workers, self.segments = set(), set()

    def __call__(self, iteration, cost):
        self.reads += 1
        if self.reads == 1:
            self.workers, self.segments = _workers(), _segments()
        if self.reads == self.at and self.act is not None:
            self.act(self)


def _interrupt(watch):
    raise KeyboardInterrupt


@linux_only
@pytest.mark.parametrize("ending", ["normal", "interrupted", "diverged"])
def test_every_ending_stops_the_workers_and_frees_the_shared_memory(ending):
    X, Y, params = _problem(1)
    before = _segments()
    assert not _workers()
    watch = _Watch(_interrupt if ending == "interrupted" else None, at=2)
    options = {"learning_rate": 1e6} if ending == "diverged" else {}
    expected = {"normal": None, "interrupted": bc.TrainingInterrupted, "diverged": bc.TrainingDivergedError}[ending]
    p = planner.plan(NUMPY, (3, 5, 1, X.shape[1]), "float64", TANH, chunk_size=100, workers=2,
                     parallel="processes")
    run = dict(activation=TANH, learning_rate=options.get("learning_rate", 0.5), num_iterations=30,
               backend=NUMPY, plan=p, cost_every=10, callback=watch)
    if expected is None:
        train(X, Y, NUMPY.parameters_from_host(params, "float64"), **run)
    else:
        with pytest.raises(expected):
            train(X, Y, NUMPY.parameters_from_host(params, "float64"), **run)
    made = watch.segments - before
    assert len(watch.workers) == 1 and len(made) == 2, "a worker and two segments ran"
    assert not _workers()
    assert _left(made) == set()


@pytest.mark.slow  # interrupts or kills a training process
@linux_only
def test_a_killed_worker_stops_the_fit_with_an_error_naming_it_and_keeps_the_parameters():
    X, Y, params = _problem(1)
    before = _segments()

    def kill(watch):
        os.kill(next(iter(watch.workers)), signal.SIGKILL)

    watch = _Watch(kill, at=1)
    with pytest.raises(bc.DistributedTrainingError, match="worker process 1 of 2 .* killed by signal SIGKILL") as err:
        _fit("processes", X, Y, params, callback=watch)
    assert err.value.iteration == 1 and set(err.value.parameters) == {"W1", "b1", "W2", "b2"}
    made = watch.segments - before
    assert len(made) == 2, "the fit ran on shared memory"
    assert not _workers()
    assert _left(made) == set()


@pytest.mark.slow  # interrupts or kills a training process
@linux_only
def test_workers_ignore_ctrl_c():
    X, Y, params = _problem(1)

    def ctrl_c(watch):
        for pid in watch.workers:
            os.kill(pid, signal.SIGINT)

    _, result = _fit("processes", X, Y, params, callback=_Watch(ctrl_c, at=1))
    _, on_threads = _fit("threads", X, Y, params)
    np.testing.assert_allclose(result.parameters["W1"], on_threads.parameters["W1"], rtol=1e-12)


@linux_only
def test_a_worker_that_does_not_answer_is_named_after_the_timeout_and_then_stopped():
    X, Y, params = _problem(1)
    before = _segments()
    shape = (3, 5, 1)
    make = building.make_gradients(NUMPY, "buffered", TANH, shape, "float64", 100)
    gradients = processes.ProcessChunkedGradients(make, 100, backend=NUMPY, dtype="float64", workers=2,
                                                  network=processes.Network.of(shape, TANH, "sigmoid", False,
                                                                               "float64"), timeout=2.0)
    with gradients.running():
        # Started, and answering: the error below can only be the stopped worker's, not a slow start's.
        gradients(params, X, Y)
        made = _segments() - before
        os.kill(gradients.pids[0], signal.SIGSTOP)  # alive, and silent
        with pytest.raises(processes.WorkerProcessError,
                           match=r"worker process 1 of 2 \(pid \d+\) did not answer within"):
            gradients(params, X, Y)
    assert len(made) == 2 and not _workers()
    assert _left(made) == set()


# -- what crosses, and what is refused -------------------------------------------------------------
def test_a_network_crosses_by_names_only():
    network = processes.Network.of((2, 4, 1), TANH, "sigmoid", True, np.float32)
    assert network == processes.Network(2, 4, 1, "tanh", "sigmoid", True, "float32")
    custom = bc.activations.Activation("tanh", lambda Z: Z, lambda Z, A: 1.0 + 0.0 * Z)
    assert processes.Network.of((2, 4, 1), custom, "sigmoid", False, "float64") is None


def test_data_larger_than_the_free_shared_memory_are_refused_before_a_byte_is_written(monkeypatch):
    monkeypatch.setattr(processes, "shared_memory_free", lambda: 1 << 10)
    X, Y, _ = _problem(1)
    with processes.WorkerProcesses(processes.Network(3, 5, 1, "tanh"), 2) as workers:
        with pytest.raises(MemoryError, match="need 0 MiB and /dev/shm has 0 MiB free"):
            workers.share(X, Y)


def test_worker_processes_need_two():
    network = processes.Network(2, 4, 1, "tanh")
    with pytest.raises(bc.InvalidInputError, match="at least 2"):
        processes.WorkerProcesses(network, 1)


@linux_only
@pytest.mark.skipif(NUMPY.default_workers < 2, reason="pinning needs two cores")
@pytest.mark.parametrize("ending", ["normal", "interrupted"])
def test_the_calling_thread_has_a_core_of_its_own_during_the_fit_and_all_its_cores_after(ending):
    X, Y, params = _problem(1)
    cores = os.sched_getaffinity(0)
    during = []

    def look(watch):
        during.append(os.sched_getaffinity(0))
        if ending == "interrupted":
            raise KeyboardInterrupt

    with contextlib.suppress(bc.TrainingInterrupted):
        _fit("processes", X, Y, params, callback=_Watch(look, at=1))
    assert len(during[0]) == 1
    assert os.sched_getaffinity(0) == cores


# -- as a user runs it -----------------------------------------------------------------------------
SCRIPT = '''
import sys
import numpy as np
from backprop_core import planner
from backprop_core.activations import get_activation
from backprop_core.backends import get_backend
from backprop_core.errors import TrainingInterrupted
from backprop_core.initialization import initial_parameters_host
from backprop_core.training import train

numpy, tanh = get_backend("numpy"), get_activation("tanh")
rng = np.random.default_rng(0)
X = rng.standard_normal((3, 4000))
Y = (X[:1] * X[1:2] > 0).astype(np.float64)
p = planner.plan(numpy, (3, 5, 1, 4000), "float64", tanh, chunk_size=500, workers=2, parallel="processes")

def started(i, J):
    print("reading the cost", flush=True)

try:
    result = train(X, Y, initial_parameters_host(3, 5, 1, "xavier", 0), activation=tanh, learning_rate=0.5,
                   num_iterations=int(sys.argv[1]), backend=numpy, plan=p, cost_every=50, callback=started)
    print("trained", result.n_iter, flush=True)
except TrainingInterrupted as exc:
    print("interrupted after", exc.iteration, flush=True)
'''


def _run_script(start, tmp_path, iterations, **popen):
    """The script started by the ``children`` fixture's ``start``."""
    path = tmp_path / "train_at_top_level.py"  # no `if __name__ == "__main__"` guard, as scripts often are
    path.write_text(SCRIPT)
    return start([sys.executable, str(path), str(iterations)], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                 **popen)


def test_a_script_that_trains_at_its_top_level_runs_on_processes(tmp_path, children):
    script = _run_script(children, tmp_path, 200)
    out, _ = script.communicate(timeout=120)
    assert script.returncode == 0 and out.strip().endswith("trained 200")
    assert out.count("reading the cost") == 5, "the script ran once: workers do not run it again"


@pytest.mark.slow  # interrupts or kills a training process
@linux_only
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_sent_to_the_group_interrupts_the_fit_and_leaves_nothing_behind(tmp_path, children, signum):
    # a group, as a shell makes for a command line; SIGTERM as systemd or a container stop sends it
    script = _run_script(children, tmp_path, 10**7, start_new_session=True, stderr=subprocess.PIPE)
    assert script.stdout.readline().strip() == "reading the cost"
    workers = [pid for pid in _group(script.pid) if _is_worker(pid)]
    made = _segments(script.pid)
    os.killpg(script.pid, signum)  # what Ctrl-C sends: to every process of the group
    out, err = script.communicate(timeout=60)
    assert script.returncode == 0 and "interrupted after" in out, err
    assert len(workers) == 1, "the script's worker ran"
    assert not [pid for pid in workers if pid in _group(script.pid)]
    assert len(made) == 2, "the script's fit ran on shared memory"
    assert _left(made) == set()
    assert "leaked" not in err, "the resource tracker found shared memory left behind"


def _group(group: int) -> set:
    return {int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _in_group(int(pid), group)}


def _is_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"backprop_core.processes" in f.read()
    except OSError:
        return False


def _in_group(pid: int, group: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[2]) == group
    except (OSError, IndexError, ValueError):
        return False


# -- a fit killed outright: its shared memory is removed at the next start -------------------------

@linux_only
def test_the_shared_memory_of_a_fit_killed_with_its_group_is_removed_when_workers_next_start(tmp_path, children):
    script = _run_script(children, tmp_path, 10**7, start_new_session=True)
    assert script.stdout.readline().strip() == "reading the cost"
    made = _segments(script.pid)
    os.killpg(script.pid, signal.SIGKILL)  # as an out-of-memory kill of a cgroup: the resource tracker too
    script.wait(timeout=60)
    assert len(made) == 2 and _left(made) == made, "the kill left the fit's segments (the case this is about)"
    assert all(name.startswith(f"{processes.SEGMENT_PREFIX}{script.pid}n") for name in made)
    with processes.WorkerProcesses(processes.Network(2, 3, 1, "tanh"), 2):
        assert _left(made) == set()


@linux_only
def test_segments_of_makers_that_run_or_of_other_namespaces_are_kept():
    from multiprocessing.shared_memory import SharedMemory

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=60)
    dead, namespace = int(gone.stdout), os.stat("/proc/self/ns/pid").st_ino
    names = {"mine": f"bcore_{os.getpid()}n{namespace}_0badc0de",
             "elsewhere": f"bcore_{dead}n{namespace + 1}_0badc0de",  # a pid of another namespace means nothing here
             "dead": f"bcore_{dead}n{namespace}_0badc0de"}
    made = [SharedMemory(name=name, create=True, size=8) for name in names.values()]
    try:
        assert names["dead"] in processes.remove_dead_segments()
        assert _left(names.values()) == {names["mine"], names["elsewhere"]}
    finally:
        for segment in made:
            segment.close()
            with contextlib.suppress(FileNotFoundError):
                segment.unlink()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="the calling thread is pinned only where there is a core for it and each worker")
def test_unpinned_frees_the_calling_thread_for_the_block_and_pins_it_again():
    cores = os.sched_getaffinity(0)
    with processes.WorkerProcesses(processes.Network(2, 3, 1, "tanh"), 2) as workers:
        pinned = os.sched_getaffinity(0)
        with workers.unpinned():
            assert os.sched_getaffinity(0) == cores
        assert os.sched_getaffinity(0) == pinned and len(pinned) == 1
