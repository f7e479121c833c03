"""Timing a plan's candidates so that the same machine gives the same plan.

A machine that other work shares makes a single timing a lottery: one chunk
took from 1.3 to 76 ms in one calibration.  So the candidates are timed in
rounds, each round calling every candidate once, in an order that rotates from
round to round (interleaved: a burst of load from another process falls on all
of them alike, not on whichever was being timed), and each gets at least
:data:`ROUNDS` samples.  What the samples say is read by one rule:

**the noise rule.** A candidate replaces the safe choice only if its time
is shorter than the safe choice's median by more than a margin
(:data:`MARGIN`, or a larger one the caller gives) *and* either both
measurements are stable (their interquartile range is at most
:data:`MAX_SPREAD` of their median) or the candidate **dominates**: timed in
the same rounds as the safe choice, it was faster in every one of them (at
least :data:`ROUNDS`), and the median of its round-by-round ratios is beyond
the margin too, and so is their mean.  A candidate's time is the larger of its median and its
mean: a fit pays every stall, and a few lucky samples must not hide them.
Otherwise the safe choice stays.  Two candidates within the margin of each
other are a tie, which the safe choice wins.

Why dominance: on a machine that other work shares, every candidate's
samples spread with the load, so stability alone would keep the safe plan
there always, even against a plan twice as fast; but a burst of load falls on
all candidates of a round alike, so round by round the faster one still
wins.  A plan no faster than the safe one wins all of 9 rounds by luck once
in 512 (each round a coin toss; with a dozen candidates, about once in 40 for
one of them), and must then also win by the margin in the median and the mean
round; a machine too noisy for that keeps the safe plan rather than a lucky one.

Before its rounds, a timing waits for the process's other threads to rest
(:func:`settled`): BLAS libraries keep their threads spinning after a product
they split, OpenBLAS for about 0.1 s, and samples timed in that window stall.
"""

from __future__ import annotations

import itertools
import os
import statistics
import threading
import time
from dataclasses import dataclass, field

#: Samples each candidate gets at least (enough for a median and quartiles that one outlier cannot move).
ROUNDS = 9
#: Samples each candidate gets at most, while the caller's time budget lasts.
MAX_ROUNDS = 31
#: A candidate replaces the safe choice only if it is faster by more than this share.
MARGIN = 0.10
#: A measurement is stable when its interquartile range is at most this share of its median.
MAX_SPREAD = 0.25

#: Longest a timing waits for the process's other threads to rest (:func:`settled`): OpenBLAS's spin
#: after a split product ended 0.103 to 0.113 s after it on the 2-core AMD EPYC of 2026-12-07
#: (bench/blas_spin.py; bench/results/cpu-2026-12-07/blas_spin.txt).
SETTLE_S = 0.25
#: After a wait that ran out, how long no timing waits again: threads that never rest are the
#: program's own work, which waiting does not end, and a plan's many timings would each pay the wait.
RESTLESS_S = 10.0
_restless_since = None


def _others_running() -> bool:
    """Whether a thread of this process other than the caller is running or ready to run (Linux)."""
    me = threading.get_native_id()
    for tid in os.listdir("/proc/self/task"):
        if int(tid) == me:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):  # the thread ended meanwhile
            continue
        if state == "R":
            return True
    return False


def settled(limit_s: float = SETTLE_S, pause_s: float = 0.01) -> bool:
    """Wait until no other thread of this process is running, at most ``limit_s`` seconds; whether they rest.

    A product OpenBLAS split leaves its threads spinning for about 0.1 s; a
    timing that starts inside that window has its samples stall, on the
    cores its own threads need (a bench worker's labelling product, just
    before the planner timed the fused step, kept a plan on one thread at
    half the rate: docs/performance.md).  Where no other thread runs, it
    returns at once.  Where the wait runs out, no timing waits again for
    :data:`RESTLESS_S` seconds.  Where threads cannot be read (not Linux),
    it returns True at once.
    """
    global _restless_since
    if not os.path.isdir("/proc/self/task"):
        return True
    start = time.monotonic()
    if _restless_since is not None and start - _restless_since < RESTLESS_S:
        return not _others_running()
    while _others_running():
        if time.monotonic() - start >= limit_s:
            _restless_since = time.monotonic()
            return False
        time.sleep(pause_s)
    return True


#: Numbers each call of :func:`time_interleaved`, so that timings of the same rounds are known as such.
_calls = itertools.count()


@dataclass(frozen=True)
class Timing:
    """The seconds one candidate took, sample by sample.

    ``rounds``: which call of :func:`time_interleaved` took the samples (None: not known),
    sample i in its round i; two timings of the same call can be compared round by round.
    """

    samples: tuple
    rounds: int | None = field(default=None, compare=False)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)

    @property
    def pessimistic(self) -> float:
        """The larger of the median and the mean (a fit pays the stalls a median leaves out)."""
        return max(self.median, self.mean)

    @property
    def spread(self) -> float:
        """The interquartile range over the median (0: every sample alike)."""
        if len(self.samples) < 4:
            return float("inf")  # too few to tell noise from speed
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return (q3 - q1) / self.median if self.median > 0 else float("inf")

    @property
    def stable(self) -> bool:
        return self.spread <= MAX_SPREAD


def time_interleaved(candidates: dict, *, prepare=None, budget_s: float = 0.0, rounds: int = ROUNDS,
                     max_rounds: int = MAX_ROUNDS, clock=time.perf_counter) -> dict:
    """``{key: Timing}`` of calling each of ``candidates`` (``{key: call}``), interleaved.

    Each call runs once untimed first (buffers, compilation, threads started).
    Then round after round, every candidate is timed once, round r starting at
    the r-th candidate; at least ``rounds`` rounds, and more, up to
    ``max_rounds``, while ``budget_s`` seconds from the start are not spent.
    ``prepare(key)``, where given, runs untimed before each of key's calls (to
    set what the candidate runs under, such as BLAS's threads).  The rounds
    start once the process's other threads rest (:func:`settled`).  ``clock``
    reads seconds (a fake one makes a test deterministic).
    """
    keys = list(candidates)
    samples = {key: [] for key in keys}
    start = clock()
    for key in keys:
        if prepare is not None:
            prepare(key)
        candidates[key]()
    settled()  # a first call's split products leave BLAS's threads spinning into the rounds
    done = 0
    while done < rounds or (done < max_rounds and clock() - start < budget_s):
        for i in range(len(keys)):
            key = keys[(done + i) % len(keys)]
            if prepare is not None:
                prepare(key)
            t0 = clock()
            candidates[key]()
            samples[key].append(clock() - t0)
        done += 1
    rounds = next(_calls)
    return {key: Timing(tuple(s), rounds) for key, s in samples.items()}


def dominates(candidate: Timing, safe: Timing, *, candidate_scale: float = 1.0, safe_scale: float = 1.0,
              margin: float = MARGIN) -> tuple[bool, str]:
    """Whether ``candidate``, timed in the same rounds as ``safe``, was faster in every round (at least
    :data:`ROUNDS`) and by more than ``margin`` in the median round and on the mean of the rounds'
    ratios (a fit pays every stall); and what the rounds said.

    Each sample is first multiplied by its scale (the candidates may have timed different
    work: ``*_scale`` turn a sample into the seconds of a fit).
    """
    if candidate.rounds is None or candidate.rounds != safe.rounds or len(candidate.samples) != len(safe.samples):
        return False, "not timed in the same rounds"
    if len(candidate.samples) < ROUNDS:
        return False, f"{len(candidate.samples)} rounds, fewer than {ROUNDS}"
    ratios = [c * candidate_scale / (s * safe_scale) for c, s in zip(candidate.samples, safe.samples)]
    wins, median, mean = sum(r < 1.0 for r in ratios), statistics.median(ratios), statistics.fmean(ratios)
    said = (f"faster in {wins} of {len(ratios)} interleaved rounds, {1.0 / median:.2f}x in the median round "
            f"({1.0 / mean:.2f}x on the mean ratio)")
    return wins == len(ratios) and max(median, mean) < 1.0 - margin, said


def replaces(candidate: Timing | None, safe: Timing | None, *, candidate_s: float | None = None,
             safe_s: float | None = None, margin: float = MARGIN) -> tuple[bool, str]:
    """Whether ``candidate`` replaces ``safe`` under the noise rule, and why (or why not).

    ``candidate_s`` and ``safe_s`` are the medians' times scaled up to the
    work of a fit (default: the medians themselves); the candidate's is
    raised by its mean over its median where that is larger.  The stability
    of each is judged on its own samples (a Timing of None, a time given
    without samples, is not judged); where either is unstable, a candidate
    timed in the same rounds as the safe choice may still replace it by
    dominating it (:func:`dominates`).
    """
    scale = 1.0 if candidate is None or candidate_s is None else candidate_s / candidate.median
    if candidate is not None:
        candidate_s = candidate.pessimistic * scale
    safe_scale = 1.0 if safe is None or safe_s is None else safe_s / safe.median
    if safe is not None and safe_s is None:
        safe_s = safe.median
    for name, timing in (("it", candidate), ("the safe choice", safe)):
        if timing is not None and not timing.stable:
            unstable = (f"{name} measured unstable (spread {timing.spread:.0%} of the median over "
                        f"{len(timing.samples)} samples, above {MAX_SPREAD:.0%})")
            if candidate is None or safe is None:
                return False, f"{unstable}: the machine is too busy to tell"
            won, rounds = dominates(candidate, safe, candidate_scale=scale, safe_scale=safe_scale, margin=margin)
            if won:  # the rounds' ratios, not the two medians: a busy moment slowed both alike
                return True, f"{unstable}, but {rounds}, beyond the {margin:.0%} margin"
            return False, f"{unstable}, and {rounds}: the machine is too busy to tell"
    if candidate_s >= safe_s * (1.0 - margin):
        return False, f"{safe_s / candidate_s:.2f}x is within the {margin:.0%} margin (a tie)"
    return True, f"{safe_s / candidate_s:.2f}x faster, beyond the {margin:.0%} margin, measured stable"
