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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from worker import make_data, repeat_times  # noqa: E402


def _median_time(fn, repeats):
    return statistics.median(repeat_times(fn, repeats))


def measure(shape, m, chunk_counts, repeats, dtype="float32"):
    import dask.array as da

    from backprop_core import building, planner
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

    whole = building.build(planner.Plan("whole batch"), X, Y, params, g, 0.1, numpy, dtype)
    rows = [{"mode": "numpy, whole batch", "m": m, "chunks": 1, "seconds": timed(whole)}]
    for k in chunk_counts:
        size = -(-m // k)
        chunked = planner.Plan("chunks", executor=building.default_executor(numpy), chunk_size=size,
                               workers=numpy.default_workers, blas_threads=1)  # as the planner's chunks run
        rows.append({"mode": "numpy, chunked", "m": m, "chunks": k,
                     "seconds": timed(building.build(chunked, X, Y, params, g, 0.1, numpy, dtype))})
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
    write_plot(rows, env, out / "chunks.png")


#: How each mode is drawn; the colour says m, so no two lines of a panel look alike.
MODE_STYLES = {"numpy, chunked": ("-", "o"), "dask, threads": (":", "s"), "numpy, whole batch": ("--", None)}


def write_plot(rows, env, path):
    """chunks.png: seconds per iteration against the number of chunks; returns the Figure.

    One panel per shape; one colour per m, one line style per mode (the whole
    batch is a flat dashed line), every line in the panel's legend, which sits
    below the panel in one column per mode.  Drawn on a bare ``Figure``, so no
    matplotlib backend is chosen or changed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:  # the numbers are written; the picture needs matplotlib
        return None
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    if not shapes:
        return None
    most_ms = max(len({r["m"] for r in rows if r["shape"] == s}) for s in shapes)
    fig = Figure(figsize=(6.5 * len(shapes), 4.6 + 0.22 * most_ms), layout="constrained")
    axes = fig.subplots(1, len(shapes), squeeze=False)[0]
    for ax, shape in zip(axes, shapes):
        sub = [r for r in rows if r["shape"] == shape]
        ms = sorted({r["m"] for r in sub})
        for mode, (style, marker) in MODE_STYLES.items():  # mode by mode: the legend's columns
            for i, m in enumerate(ms):
                pts = sorted((r["chunks"], r["seconds"]) for r in sub if r["m"] == m and r["mode"] == mode)
                if not pts:
                    continue
                label = f"{mode}, m=2^{m.bit_length() - 1}"
                if mode == "numpy, whole batch":
                    ax.axhline(pts[0][1], color=f"C{i % 10}", linestyle=style, linewidth=1, label=label)
                else:
                    ax.plot(*zip(*pts), color=f"C{i % 10}", linestyle=style, marker=marker, ms=3, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("number of chunks")
        ax.set_ylabel("seconds per iteration")
        ax.set_title(f"shape {shape}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=len(MODE_STYLES), fontsize=7)
    fig.suptitle(f"One full-batch iteration (float32) on {env.get('cpu', 'unknown CPU')} x "
                 f"{env.get('cpu_count', '?')}" + (f", {env['date'][:10]}" if env.get("date") else ""))
    fig.savefig(path, dpi=110)
    return fig


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
