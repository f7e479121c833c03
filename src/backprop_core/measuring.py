"""Timing a plan's candidates so that the same machine gives the same plan.

A machine that other work shares makes a single timing a lottery: one chunk
took from 1.3 to 76 ms in one calibration.  So the candidates are timed in
rounds, each round calling every candidate once, in an order that rotates from
round to round (interleaved: a burst of load from another process falls on all
of them alike, not on whichever was being timed), and each gets at least
:data:`ROUNDS` samples.  What the samples say is read by one rule:

**the noise rule.** A candidate replaces the safe choice only if its time
is shorter than the safe choice's median by more than a margin
(:data:`MARGIN`, or a larger one the caller gives) *and* both measurements
are stable: their interquartile range is at most :data:`MAX_SPREAD` of their
median.  A candidate's time is the larger of its median and its mean: a fit
pays every stall, and a few lucky samples must not hide them.  Otherwise the
safe choice stays.  Two candidates within the margin of each other are a tie, which the
safe choice wins; a machine too noisy to tell keeps the safe plan rather
than a lucky one.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

#: Samples each candidate gets at least (enough for a median and quartiles that one outlier cannot move).
ROUNDS = 9
#: Samples each candidate gets at most, while the caller's time budget lasts.
MAX_ROUNDS = 31
#: A candidate replaces the safe choice only if it is faster by more than this share.
MARGIN = 0.10
#: A measurement is stable when its interquartile range is at most this share of its median.
MAX_SPREAD = 0.25


@dataclass(frozen=True)
class Timing:
    """The seconds one candidate took, sample by sample."""

    samples: tuple

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
    set what the candidate runs under, such as BLAS's threads).  ``clock``
    reads seconds (a fake one makes a test deterministic).
    """
    keys = list(candidates)
    samples = {key: [] for key in keys}
    start = clock()
    for key in keys:
        if prepare is not None:
            prepare(key)
        candidates[key]()
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
    return {key: Timing(tuple(s)) for key, s in samples.items()}


def replaces(candidate: Timing | None, safe: Timing | None, *, candidate_s: float | None = None,
             safe_s: float | None = None, margin: float = MARGIN) -> tuple[bool, str]:
    """Whether ``candidate`` replaces ``safe`` under the noise rule, and why (or why not).

    ``candidate_s`` and ``safe_s`` are the medians' times scaled up to the
    work of a fit (default: the medians themselves); the candidate's is
    raised by its mean over its median where that is larger.  The stability
    of each is judged on its own samples (a Timing of None, a time given
    without samples, is not judged).
    """
    if candidate is not None:
        candidate_s = candidate.pessimistic * (1.0 if candidate_s is None else candidate_s / candidate.median)
    if safe is not None and safe_s is None:
        safe_s = safe.median
    for name, timing in (("it", candidate), ("the safe choice", safe)):
        if timing is not None and not timing.stable:
            return False, (f"{name} measured unstable (spread {timing.spread:.0%} of the median over "
                           f"{len(timing.samples)} samples, above {MAX_SPREAD:.0%}): the machine is too busy to tell")
    if candidate_s >= safe_s * (1.0 - margin):
        return False, f"{safe_s / candidate_s:.2f}x is within the {margin:.0%} margin (a tie)"
    return True, f"{safe_s / candidate_s:.2f}x faster, beyond the {margin:.0%} margin, measured stable"
