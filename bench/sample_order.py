"""What runs just before a timed call of the fused CPU step changes its time: the planner's case.

    python bench/sample_order.py --shape 2-4-1 --m 2**16 --rounds 400

The planner times a lowering target in turns with the plan it would replace (its fallback), one
call a sample at m = 2^16.  In one process, in turns, the fused step on every core is timed right
after: the fallback's step (cold: its pool's threads slept through it), the fallback's step and one
untimed step of its own (warm: what the planner now times, as a fit's steps follow each other), the
fallback's step and one on 1 thread, and the fallback's step and three of its own; then in a run of
its own steps with nothing between, as a fit runs them (the rate the others stand for).  Prints the
median, quartiles and spread (interquartile range over the median, the planner's noise rule refuses
above 25%) of each, and ``uptime``'s load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import backprop_core as bc
from backprop_core import building, planner
from backprop_core.backends import get_backend
from backprop_core.initialization import initial_parameters_host
from backprop_core.lowering import cpu_fused


def _int_expr(text: str) -> int:
    # as bench/run.py reads an m: nothing else is evaluated
    for operator, apply in (("**", pow), ("<<", lambda a, b: a << b)):
        if operator in text:
            base, exponent = text.split(operator)
            return apply(int(base), int(exponent))
    return int(text)


def _seconds(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="2-4-1")
    parser.add_argument("--m", type=_int_expr, default=2**16, help="examples: 65536, 2**16 or 1<<16")
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args(argv)
    n0, n1, n2 = (int(v) for v in args.shape.split("-"))
    m = args.m
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n0, m)).astype(np.float32)
    Y = (rng.random((n2, m)) > 0.5).astype(np.float32)
    params = {k: v.astype(np.float32) for k, v in initial_parameters_host(n0, n1, n2, "xavier", seed=0).items()}
    backend, g = get_backend("numpy"), bc.get_activation("tanh")
    # The fallback the bench worker's plan at 2^16 timed against: one chunk, buffered, BLAS on 1 thread.
    fallback = building.build(planner.Plan("chunks", chunk_size=m, executor="buffered", blas_threads=1),
                              X, Y, params, g, 0.01, backend, "float32")
    every = cpu_fused.compile((n0, n1, n2), "tanh", "float32", 0.01, threads=planner.cpu_cores())
    one = cpu_fused.compile((n0, n1, n2), "tanh", "float32", 0.01, threads=1)
    X, Y = every.prepare(X), every.prepare(Y)

    def timed():
        return every(params, X, Y, False)

    before = {"after the fallback's step (cold)": lambda: None,
              "after it and one untimed step of its own (warm)": timed,
              "after it and a step on 1 thread": lambda: one(params, X, Y, False),
              "after it and 3 untimed steps of its own": lambda: [timed() for _ in range(3)]}
    times = {name: [] for name in before}
    with fallback.running():
        for name, call in before.items():  # each once untimed: builds, buffers, threads started
            fallback.step(params, 0, False), call(), timed()
        for _ in range(args.rounds):
            for name, call in before.items():
                fallback.step(params, 0, False)
                call()
                times[name].append(_seconds(timed))
    # A fit's steps, one after another with nothing between: the rate the timings above stand for.
    times["after a step of its own, nothing else (a fit)"] = [_seconds(timed) for _ in range(args.rounds)]
    print(f"{args.shape}, m = {m:,}, float32, fused step on {planner.cpu_cores()} threads, {args.rounds} rounds; "
          f"load {os.getloadavg()[0]:.2f}")
    for name, samples in times.items():
        q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
        print(f"{name:50s} median {median * 1e3:.3f} ms  q1 {q1 * 1e3:.3f}  q3 {q3 * 1e3:.3f}  "
              f"spread {(q3 - q1) / median:.0%}")


if __name__ == "__main__":
    main()
