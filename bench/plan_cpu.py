"""Where the CPU went while the bench worker planned: what ran beside the planner's timings.

    python bench/plan_cpu.py --shape 2-4-1 --ms 2**12,2**16 --rounds 3

Runs the numpy entry of ``bench/worker.py`` in this process, m after m as the worker does
(m = 64 first, then ``--ms``), and around each of the planner's measurements (the chunk
calibration, the worker processes' calibration, BLAS's threads, the lowering targets' timing)
accounts the CPU each thread of this process used and how long it waited for a core (Linux's
``/proc/self/task/*/schedstat``), the CPU of the threads that ended inside, of the live
children, and of everything else on the machine (``/proc/stat``'s busy time less ours).  A
thread, a child or a pool that a previous plan left running shows up there by name, whatever
the machine's load.

Then, ``--rounds`` times, the fused CPU step's thread counts are timed as the planner times them
(interleaved, each sample right after an untimed step of its own), and the samples during which a
thread of this process waited for a core beyond a wake-up are told apart from the others: their
times and spreads say whether the machine's other work, or the step itself, makes a timing
unstable, and the samples in which another thread ran on the calling thread's core are counted (a
step's worker queued behind its caller).  Linux only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import worker  # noqa: E402  (bench/worker.py: the entry and its sweep, as bench/run.py runs them)
from sample_order import _int_expr  # noqa: E402

from backprop_core import calibrations, measuring  # noqa: E402
from backprop_core.backends import get_backend  # noqa: E402
from backprop_core.lowering import cpu_fused  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
#: A pool thread's wake-up counts as waiting for a core too (from its wake to its run): on the quiet
#: 2-core machine a few microseconds; a sample whose threads waited beyond this waited for other work.
WAKE_S = 20e-6


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _threads() -> dict:
    """``{tid: (name, ran_s, waited_s, slices)}`` of this process's live threads."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            ran, waited, slices = (int(v) for v in _read(f"/proc/self/task/{tid}/schedstat").split())
            out[int(tid)] = (_read(f"/proc/self/task/{tid}/comm").strip(), ran / 1e9, waited / 1e9, slices)
        except OSError:  # ended between the listing and the read
            continue
    return out


def _placed() -> dict:
    """``{tid: (ran_ns, last core)}`` of this process's live threads."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            ran = int(_read(f"/proc/self/task/{tid}/schedstat").split()[0])
            out[int(tid)] = (ran, int(_read(f"/proc/self/task/{tid}/stat").rsplit(")", 1)[1].split()[36]))
        except OSError:
            continue
    return out


def _shared_core(before: dict, after: dict, me: int) -> bool:
    """Did a thread other than ``me`` that ran between the two :func:`_placed` last run on ``me``'s core?"""
    return any(core == after[me][1] for tid, (ran, core) in after.items()
               if tid != me and ran != before.get(tid, (None, None))[0])


def _cpu_s(pid="self", ended_children=False) -> float:
    fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    if ended_children:  # cutime + cstime: the children waited for
        return (int(fields[13]) + int(fields[14])) / TICK
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime: every thread's, ended ones too


def _children() -> dict:
    """``{pid: (name, cpu_s)}`` of this process's live children."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            pids = _read(f"/proc/self/task/{tid}/children").split()
        except OSError:
            continue
        for pid in pids:
            try:
                command = _read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()
                out[int(pid)] = (command[:70], _cpu_s(pid))
            except OSError:
                continue
    return out


def _machine_s() -> tuple:
    """``(busy, stolen)`` seconds of every core: busy (all but idle, iowait and steal), and stolen:
    a core this machine's kernel wanted to run while the host (a VM's) ran something else."""
    cpu = [int(v) for v in _read("/proc/stat").splitlines()[0].split()[1:]]
    steal = cpu[7] if len(cpu) > 7 else 0
    return (sum(cpu[:8]) - cpu[3] - cpu[4] - steal) / TICK, steal / TICK


def _snapshot():
    return time.perf_counter(), _threads(), _cpu_s(), _children(), _machine_s(), _cpu_s(ended_children=True)


def _account(label: str, before, after) -> None:
    wall = after[0] - before[0]
    ours, ended = after[2] - before[2], after[5] - before[5]
    children = sum(c - before[3].get(pid, (None, 0.0))[1] for pid, (_, c) in after[3].items())
    others = after[4][0] - before[4][0] - ours - ended - children
    stolen = after[4][1] - before[4][1]
    print(f"{label}: {wall * 1e3:.0f} ms; CPU: this process {ours * 1e3:.0f} ms, its children that ended "
          f"{ended * 1e3:.0f} ms and that live {children * 1e3:.0f} ms, the rest of the machine about "
          f"{max(0.0, others) * 1e3:.0f} ms (of {os.cpu_count() * wall * 1e3:.0f}), stolen by the host "
          f"{stolen * 1e3:.0f} ms; "
          f"{len(after[1])} threads and {len(after[3])} children alive after")
    for tid, (name, ran, waited, slices) in sorted(after[1].items()):
        _, ran0, waited0, slices0 = before[1].get(tid, (name, 0.0, 0.0, 0))
        if slices != slices0:
            print(f"    thread {tid} ({name}): ran {(ran - ran0) * 1e3:.1f} ms, waited for a core "
                  f"{(waited - waited0) * 1e3:.1f} ms, {slices - slices0} times on a core")
    for pid, (name, cpu) in sorted(after[3].items()):
        print(f"    child {pid} ({name}): {(cpu - before[3].get(pid, (name, 0.0))[1]) * 1e3:.0f} ms of CPU"
              f"{'' if pid in before[3] else ' (started inside)'}")
    sys.stdout.flush()


def _accounted(module, name: str, label) -> None:
    function = getattr(module, name)

    def wrapped(*args, **kwargs):
        before = _snapshot()
        try:
            return function(*args, **kwargs)
        finally:
            _account(label(args), before, _snapshot())

    setattr(module, name, wrapped)


def _waited_s() -> float:
    return sum(waited for _, _, waited, _ in _threads().values())


def attribute(n0, n1, n2, m, rounds: int = 31) -> None:
    """The fused step's thread counts timed as the planner times them, the samples whose threads waited
    for a core beyond a wake-up (:data:`WAKE_S`) apart from the others."""
    X, Y, params = calibrations._calibration_data(get_backend("numpy"), n0, n1, n2, "float32", m)
    steps = {}
    for t in sorted({1, calibrations.cpu_cores()}):
        step = cpu_fused.compile((n0, n1, n2), "tanh", "float32", 0.01, threads=t)
        steps[t] = partial(step, params, step.prepare(X), step.prepare(Y), False)
    repeat = calibrations.target_repeat(m)  # steps in a sample, as the planner times them
    samples, shared, me = {t: [] for t in steps}, dict.fromkeys(steps, 0), threading.get_native_id()
    for t in steps:
        steps[t]()
    for r in range(rounds):
        for i in range(len(steps)):
            t = list(steps)[(r + i) % len(steps)]
            steps[t]()  # the untimed step of its own, as the planner's prepare
            waited, placed = _waited_s(), _placed()
            t0 = time.perf_counter()
            for _ in range(repeat):
                steps[t]()
            seconds = time.perf_counter() - t0
            samples[t].append((seconds, _waited_s() - waited))
            shared[t] += _shared_core(placed, _placed(), me)
    for t, pairs in samples.items():
        timing = measuring.Timing(tuple(s for s, _ in pairs))
        line = f"    {t} thread(s): {m * repeat / timing.median / 1e6:.0f} M/s, spread {timing.spread:.0%} over {len(pairs)} samples"
        for name, part in (("waited at most", [s for s, w in pairs if w <= WAKE_S]),
                           ("waited longer than", [s for s, w in pairs if w > WAKE_S])):
            if part:
                spread = f", spread {measuring.Timing(tuple(part)).spread:.0%}" if len(part) >= 4 else ""
                line += (f"; {len(part)} whose threads {name} {WAKE_S * 1e6:.0f} us for a core: median "
                         f"{statistics.median(part) * 1e6:.0f} us{spread}")
        waits = sorted(w for _, w in pairs)
        print(line + f" (waits: median {statistics.median(waits) * 1e6:.0f} us, largest {waits[-1] * 1e6:.0f} us); "
              f"{shared[t]} in which another thread of this process ran on the calling thread's core")
    sys.stdout.flush()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="2-4-1")
    parser.add_argument("--ms", default="2**12,2**16", help="the worker's m after its first (64), comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="attributions of the fused step's timing")
    args = parser.parse_args(argv)
    ms = [_int_expr(v) for v in args.ms.split(",")]
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    _accounted(calibrations, "_measure", lambda a: "  the chunk calibration")
    _accounted(calibrations, "_measure_processes", lambda a: "  the worker processes' calibration")
    _accounted(calibrations, "blas_calibration", lambda a: f"  BLAS's threads at m = {a[4]:,}")
    _accounted(calibrations, "time_target", lambda a: f"  {a[0].name} timed against the fallback at m = {a[2]:,}")
    measure = worker.measure

    def measured(entry, n0, n1, n2, m, *rest):
        before = _snapshot()
        record = measure(entry, n0, n1, n2, m, *rest)
        after = _snapshot()
        _account(f"m = {m:,}: planned, built, stepped, released", before, after)
        time.sleep(0.5)  # what a finished plan leaves running uses the CPU now, with nothing else of ours
        _account(f"m = {m:,}: 0.5 s after, idle", after, _snapshot())
        print(f"  plan at m = {m:,}: {record.get('plan')}\n", flush=True)
        return record

    worker.measure = measured
    worker.print = lambda *a, **k: None  # the worker's JSON lines: the plan is printed above
    worker.main(["--entry", "numpy", "--shape", args.shape, "--m-min", "64", "--m-max", str(max(ms)),
                 "--ms", ",".join(map(str, ms)), "--budget", "1000"])
    n0, n1, n2 = (int(v) for v in args.shape.split("-"))
    for r in range(args.rounds):
        print(f"the fused step's thread counts timed as the planner times them at m = {max(ms):,}, round {r + 1}:")
        attribute(n0, n1, n2, min(max(ms), calibrations.MAX_TARGET_CALIBRATION))
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
