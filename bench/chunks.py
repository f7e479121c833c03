"""The cost of one full-batch iteration against m and the number of chunks.

    python bench/chunks.py [--shapes 2-4-1,64-64-1] [--out DIR]

For each m and each number of chunks, times one iteration of the chunked
numpy step (backprop_core.chunked, every core) and of the Dask backend
(default threaded scheduler, one task per chunk), beside the unchunked numpy
step.  Writes ``chunks.jsonl``, ``chunks.md`` and ``chunks.png``.  Never
asserts speed: read the output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from backprop_core.plotting import pyplot

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from worker import make_data, repeat_times  # noqa: E402


def _median_time(fn, repeats):
    return statistics.median(repeat_times(fn, repeats))


def measure(shape, m, chunk_counts, repeats, dtype="float32"):
    import dask.array as da

    from backprop_core import planner
    from backprop_core.activations import get_activation
    from backprop_core.backends import get_backend
    from backprop_core.dask_training import DaskFullBatch
    from backprop_core.initialization import initial_parameters_host

    n0, n1, n2 = shape
    g = get_activation("tanh")
    X, Y = make_data(n0, n2, m)
    numpy, dask_backend = get_backend("numpy"), get_backend("dask")
    params = numpy.parameters_from_host(initial_parameters_host(n0, n1, n2, "xavier"), dtype)

    def timed(strategy):
        with strategy.running():
            return _median_time(lambda: strategy.step(params, 1, False), repeats)

    whole = planner.build(planner.Plan("whole batch"), X, Y, params, g, 0.1, numpy, dtype)
    rows = [{"mode": "numpy, whole batch", "m": m, "chunks": 1, "seconds": timed(whole)}]
    for k in chunk_counts:
        size = -(-m // k)
        chunked = planner.Plan("chunks", executor=planner.default_executor(numpy), chunk_size=size,
                               workers=numpy.default_workers)
        rows.append({"mode": "numpy, chunked", "m": m, "chunks": k,
                     "seconds": timed(planner.build(chunked, X, Y, params, g, 0.1, numpy, dtype))})
        on_dask = DaskFullBatch(da.from_array(X, chunks=(-1, size)), da.from_array(Y, chunks=(-1, size)),
                                params, g, 0.1, dask_backend)
        rows.append({"mode": "dask, threads", "m": m, "chunks": k, "seconds": timed(on_dask)})
    for r in rows:
        r.update(shape="-".join(map(str, shape)), examples_per_s=m / r["seconds"])
    return rows


def write_outputs(rows, env, out):
    with open(out / "chunks.jsonl", "w") as f:
        f.write(json.dumps(env) + "\n")
        for r in rows:
            f.write(json.dumps(r) + "\n")
    lines = ["# One full-batch iteration against m and the number of chunks (float32)", "",
             f"{env['cpu']} x {env['cpu_count']}, {env['date']}; median of {env['repeats']} repeats; "
             "milliseconds per iteration (lower is better).", ""]
    for shape in dict.fromkeys(r["shape"] for r in rows):
        sub = [r for r in rows if r["shape"] == shape]
        counts = sorted({r["chunks"] for r in sub if r["mode"] != "numpy, whole batch"})
        lines += [f"## {shape}", "", "| m | mode | " + " | ".join(f"{k} chunk{'s' if k > 1 else ''}" for k in counts)
                  + " | whole batch |", "|---|---|" + "---|" * (len(counts) + 1)]
        for m in sorted({r["m"] for r in sub}):
            whole = next(r for r in sub if r["m"] == m and r["mode"] == "numpy, whole batch")
            for mode in ("numpy, chunked", "dask, threads"):
                cells = {r["chunks"]: r for r in sub if r["m"] == m and r["mode"] == mode}
                best = min(cells.values(), key=lambda r: r["seconds"])
                row = ["-" if k not in cells else f"**{1e3 * cells[k]['seconds']:.3g}**" if cells[k] is best
                       else f"{1e3 * cells[k]['seconds']:.3g}" for k in counts]
                lines.append(f"| 2^{m.bit_length() - 1} | {mode} | " + " | ".join(row)
                             + f" | {1e3 * whole['seconds']:.3g} |")
        lines.append("")
    (out / "chunks.md").write_text("\n".join(lines) + "\n")
    try:
        plt = pyplot()
    except ImportError:  # the numbers are written; the picture needs matplotlib
        return
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    fig, axes = plt.subplots(1, len(shapes), figsize=(6 * len(shapes), 4.5), squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        sub = [r for r in rows if r["shape"] == shape]
        for m in sorted({r["m"] for r in sub}):
            for mode, style in (("numpy, chunked", "-"), ("dask, threads", ":")):
                pts = sorted((r["chunks"], r["seconds"]) for r in sub if r["m"] == m and r["mode"] == mode)
                line, = ax.plot(*zip(*pts), style, marker="o", ms=3, label=f"{mode}, m=2^{m.bit_length() - 1}")
            whole = next(r for r in sub if r["m"] == m and r["mode"] == "numpy, whole batch")
            ax.axhline(whole["seconds"], color=line.get_color(), linestyle="--", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("number of chunks")
        ax.set_ylabel("seconds per iteration (dashed: whole batch)")
        ax.set_title(shape)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "chunks.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="2-4-1,64-64-1")
    p.add_argument("--ms", default="16,18,20,22", help="exponents of 2 for m (2-4-1; wider shapes use 4 less)")
    p.add_argument("--chunks", default="1,2,4,8,16,32,64,128,256")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    from run import _cpu_model

    env = {"kind": "environment", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "cpu": _cpu_model(), "cpu_count": __import__("os").cpu_count(), "repeats": a.repeats,
           "numpy": np.__version__, "dask": __import__("dask").__version__}
    out = Path(a.out or HERE / "results" / f"cpu-{dt.date.today().isoformat()}")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in a.shapes.split(","):
        shape = tuple(int(v) for v in spec.split("-"))
        wide = shape[1] > 8
        for e in (int(v) for v in a.ms.split(",")):
            m = 2 ** (e - 4 if wide else e)
            counts = [k for k in (int(v) for v in a.chunks.split(",")) if m // k >= 256]
            got = measure(shape, m, counts, a.repeats)
            rows += got
            best = min((r for r in got if r["mode"] != "numpy, whole batch"), key=lambda r: r["seconds"])
            print(f"{spec} m=2^{m.bit_length() - 1}: whole {1e3 * got[0]['seconds']:.3g} ms, best {best['mode']} "
                  f"with {best['chunks']} chunks {1e3 * best['seconds']:.3g} ms", flush=True)
    write_outputs(rows, env, out)
    print((out / "chunks.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
