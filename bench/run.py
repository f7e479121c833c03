"""Large-m throughput of one full-batch training step, backends and peers side by side.

    python bench/run.py                       # every usable backend and peer, default shapes
    python bench/run.py --backends numpy,jax --peers torch-nn --shapes 2-4-1 --m-max 2**22

Writes ``results.jsonl`` (environment, machine limits, every measurement),
``table.md`` (headline numbers) and ``throughput.png`` (examples/s against m)
into ``--out`` (default ``bench/results/<machine>-<date>``).  Each entry runs in a
process of its own.  Nothing here asserts speed: read the output.

A run cut short loses nothing that finished: each measurement is appended to
``results.jsonl`` as its worker prints it, and the table and plot are written
from whatever is there when the run ends, is stopped (SIGTERM, Ctrl-C) or,
afterwards, with ``python bench/run.py --report DIR``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import write_plot, write_table  # noqa: E402
from worker import PEERS, bytes_per_example, flops_per_example  # noqa: E402


def _int_expr(text: str) -> int:
    # "2**20", "1<<20" and "1048576" all read as integers, nothing else is evaluated.
    if "**" in text:
        base, exp = text.split("**")
        return int(base) ** int(exp)
    if "<<" in text:
        base, shift = text.split("<<")
        return int(base) << int(shift)
    return int(text)


def environment(args) -> dict:
    import numpy

    env = {"kind": "environment", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "host": socket.gethostname(), "python": platform.python_version(), "platform": platform.platform(),
           "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "numpy": numpy.__version__,
           "dtype": args.dtype, "tf32": args.tf32, "repeats": args.repeats,
           "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    try:
        from threadpoolctl import threadpool_info

        env["blas_threads"] = [{k: i.get(k) for k in ("internal_api", "num_threads", "architecture")}
                               for i in threadpool_info()]
    except ImportError:
        pass
    for lib in ("array_api_compat", "array_api_strict", "torch", "jax", "cupy", "sklearn"):
        try:
            env[lib] = __import__(lib).__version__
        except Exception:
            env[lib] = None
    if env["torch"]:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            env["gpu"] = props.name
            env["gpu_memory_bytes"] = props.total_memory
    return env


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _run_json(cmd, timeout):
    return list(_stream_json(cmd, timeout))


def _stream_json(cmd, timeout):
    """Each JSON line ``cmd`` prints, as it prints it; a last record says why it failed, if it did."""
    with tempfile.TemporaryFile("w+") as errors, \
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                if line.startswith("{"):
                    yield json.loads(line)
            proc.wait()
        finally:
            timed_out = not timer.is_alive() and proc.returncode is not None and proc.returncode < 0
            timer.cancel()
            if proc.poll() is None:  # stopped from outside: the worker must not outlive the run
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            errors.seek(0)
            lines = errors.read().strip().splitlines()
            yield {"error": f"worker timed out after {timeout:.0f} s" if timed_out
                   else (lines[-1] if lines else f"exit {proc.returncode}"), "cmd": " ".join(cmd[2:])}


def write_report(records, out: Path) -> None:
    """The table and the plot from the records of a run, finished or not."""
    if any(r.get("kind") == "environment" for r in records):
        write_table(records, out / "table.md")
        write_plot(records, out / "throughput.png")


def read_records(out: Path) -> list:
    path = out / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def default_entries():
    from backprop_core.backends import backend_names

    # The numpy backend once more as the equations array by array, beside what its planner runs.
    names = backend_names()
    return names[:1] + ["numpy:equations"] + names[1:]


def _floors(records) -> dict:
    return {(r["shape"], r["gpu"]): r["examples_per_s"] for r in records if r.get("kind") == "floor"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default=None, help="comma-separated library backends (default: every registered one)")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated peers from {PEERS}, or 'none'")
    p.add_argument("--shapes", default="2-4-1,64-64-1,784-512-1", help="n0-n1-n2, comma-separated")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--m-min", type=_int_expr, default=2**10)
    p.add_argument("--m-max", type=_int_expr, default=2**28, help="upper bound; memory and the budget stop sooner")
    p.add_argument("--budget", type=float, default=15.0, help="seconds per entry and shape")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on GPUs (off by default)")
    p.add_argument("--device", default=None, help="device for the GPU-capable backends (default: theirs)")
    p.add_argument("--out", default=None)
    p.add_argument("--report", metavar="DIR", default=None,
                   help="only write table.md and throughput.png from DIR/results.jsonl (of a run cut short)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.report:
        write_report(read_records(Path(args.report)), Path(args.report))
        return 0

    backends = args.backends.split(",") if args.backends else default_entries()
    peers = [] if args.peers in ("", "none") else args.peers.split(",")
    unknown = [e for e in peers if e not in PEERS]
    if unknown:
        p.error(f"unknown peer(s) {unknown}; choose from {PEERS}")
    shapes = args.shapes.split(",")
    env = environment(args)
    machine = (env.get("gpu") or "cpu").replace(" ", "-").lower()
    out = Path(args.out or HERE / "results" / f"{machine}-{dt.date.today().isoformat()}")
    out.mkdir(parents=True, exist_ok=True)
    records = []
    # A timeout (SIGTERM) ends the run as Ctrl-C would: the worker is killed, the report written.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with open(out / "results.jsonl", "w") as results:
        def keep(rec):
            records.append(rec)
            results.write(json.dumps(rec) + "\n")
            results.flush()

        try:
            _measure_all(args, env, backends, peers, shapes, keep)
        finally:
            write_report(records, out)
    if not args.quiet:
        print((out / "table.md").read_text())
        print(f"results in {out}")
    return 0


def _measure_all(args, env, backends, peers, shapes, keep):
    keep(env)
    limits = _run_json([sys.executable, str(HERE / "limits.py"), "--dtype", args.dtype], 300)
    if env.get("gpu"):
        limits += _run_json([sys.executable, str(HERE / "limits.py"), "--gpu", "--dtype", args.dtype]
                            + (["--tf32"] if args.tf32 else []), 300)
    for rec in limits:
        rec["kind"] = "limits"
        keep(rec)
    itemsize = 4 if args.dtype == "float32" else 8
    floors = []
    for shape in shapes:
        n0, n1, n2 = (int(v) for v in shape.split("-"))
        for lim in limits:
            if "copy_bytes_per_s" in lim:
                floor = min(lim["copy_bytes_per_s"] / bytes_per_example(n0, n2, itemsize),
                            lim["matmul_flops_per_s"] / flops_per_example(n0, n1, n2))
                floors.append({"kind": "floor", "shape": shape, "gpu": lim["device"] != "cpu",
                               "device": lim["device"], "examples_per_s": floor,
                               "bytes_per_example": bytes_per_example(n0, n2, itemsize),
                               "flops_per_example": flops_per_example(n0, n1, n2)})
    for rec in floors:
        keep(rec)
    floor_of = _floors(floors)

    for entry in backends + peers:
        for shape in shapes:
            cmd = [sys.executable, str(HERE / "worker.py"), "--entry", entry, "--shape", shape,
                   "--dtype", args.dtype, "--m-min", str(args.m_min), "--m-max", str(args.m_max),
                   "--budget", str(args.budget), "--repeats", str(args.repeats)]
            if args.device is not None and entry.partition(":")[0] in ("cupy", "torch", "jax", "torch-nn"):
                cmd += ["--device", args.device]
            if args.tf32:
                cmd.append("--tf32")
            unavailable = False
            for rec in _stream_json(cmd, timeout=20 * args.budget + 300):
                rec.setdefault("entry", entry)
                rec.setdefault("shape", shape)
                rec["kind"] = "measurement" if "examples_per_s" in rec else "note"
                if rec["kind"] == "measurement":
                    floor = floor_of.get((shape, rec.get("gpu", False)))
                    rec["fraction_of_floor"] = rec["examples_per_s"] / floor if floor else None
                unavailable = unavailable or "unavailable" in rec
                keep(rec)
                if not args.quiet:
                    if "examples_per_s" in rec:
                        print(f"{entry:>18} {shape:>10} m={rec['m']:>11,} {rec['examples_per_s']:>14,.0f} ex/s"
                              f"{'' if rec['trained'] else '  NOT TRAINING'}", flush=True)
                    else:
                        print(f"{entry:>18} {shape:>10} {json.dumps({k: v for k, v in rec.items() if k not in ('entry', 'shape', 'kind')})}", flush=True)
            if unavailable:
                break  # the entry cannot run here; one note is enough


if __name__ == "__main__":
    sys.exit(main())
