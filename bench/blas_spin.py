"""How long BLAS's threads keep running after a product they split, and whether the planner's wait ends it.

    python bench/blas_spin.py [--size 2000] [--rounds 3] [--out FILE]

Each round multiplies two ``--size`` square float32 matrices with BLAS on every core (OpenBLAS
splits it among its threads), then reads, every 10 ms for 0.3 s, the run time the process's other
threads took in that interval (Linux's ``/proc/self/task/*/schedstat``, updated at the scheduler's
ticks).  Then the same product again, followed by :func:`backprop_core.measuring.settled` (what
every planner timing calls before its rounds): how long it waited, and the other threads' run time
in the 50 ms after it.  Prints a plain-text report and writes it to ``--out`` where given.  Linux
only; never asserts speed: read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from backprop_core import measuring


def others_ran_ns() -> int:
    """Nanoseconds the threads of this process other than the caller have run, in all."""
    me, total = str(threading.get_native_id()), 0
    for tid in os.listdir("/proc/self/task"):
        if tid != me:
            with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    return total


def split_product(a):
    with threadpool_limits(os.cpu_count(), user_api="blas"):
        a @ a


def after_product(a, interval_s=0.01, span_s=0.3) -> list:
    """(seconds since the product, ms the other threads ran in the interval before), each interval."""
    split_product(a)
    t0, before, rows = time.perf_counter(), others_ran_ns(), []
    while time.perf_counter() - t0 < span_s:
        time.sleep(interval_s)
        now = others_ran_ns()
        rows.append((time.perf_counter() - t0, (now - before) / 1e6))
        before = now
    return rows


def after_settled(a, window_s=0.05) -> tuple:
    """(seconds settled waited, whether they rest, ms the other threads ran in the window after)."""
    split_product(a)
    t0 = time.perf_counter()
    rest = measuring.settled()
    waited = time.perf_counter() - t0
    before = others_ran_ns()
    time.sleep(window_s)
    return waited, rest, (others_ran_ns() - before) / 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    if not os.path.isdir("/proc/self/task"):
        print("needs Linux's /proc/self/task", file=sys.stderr)
        return 1
    A = np.ones((a.size, a.size), np.float32)
    lines = [f"BLAS on {os.cpu_count()} cores, {a.size} x {a.size} float32 product; load {os.getloadavg()[0]:.2f}"]
    for r in range(a.rounds):
        rows = after_product(A)
        running = [t for t, ms in rows if ms > 0]
        lines.append(f"round {r}: the other threads last ran in the 10 ms ending {max(running, default=0):.3f} s "
                     f"after the product; ms they ran by interval: " + ", ".join(f"{ms:.1f}" for _, ms in rows))
    for r in range(a.rounds):
        waited, rest, ms = after_settled(A)
        lines.append(f"round {r}: settled waited {waited:.3f} s (rest: {rest}); the other threads then ran "
                     f"{ms:.2f} ms in 50 ms")
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if a.out:
        a.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
