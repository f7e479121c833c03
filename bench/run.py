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

Each entry runs its shapes in one worker process, the peers first (every ratio
is taken against them); a shape an entry cannot train (the fused kernel's limit)
is not started.  ``--time-limit`` shares a whole run's seconds among the entries
still to run, so a cap cuts none of them out.  Every measurement names the device
its data were on; with ``--require-gpu`` an entry that is not on a GPU fails.
The exit status is 1 where an entry failed (it says which, and why) or none
measured anything, else 0.
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
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import write_plot, write_table  # noqa: E402
from worker import PEERS, applies, bytes_per_example, flops_per_example  # noqa: E402


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


#: The entries that take ``--device`` (and ``--require-gpu``): the GPU-capable libraries and their peer.
GPU_CAPABLE = ("cupy", "torch", "jax", "torch-nn")


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
                   else (lines[-1] if lines else f"exit {proc.returncode}"), "timed_out": timed_out,
                   "cmd": " ".join(cmd[2:])}


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
    p.add_argument("--ms", type=lambda text: [_int_expr(v) for v in text.split(",")], default=None,
                   help="only these m, e.g. 2**16,2**22 (memory and the budget stop sooner), instead of "
                        "doubling from --m-min to --m-max")
    p.add_argument("--budget", type=float, default=15.0, help="seconds per entry and shape")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on GPUs (off by default)")
    p.add_argument("--device", default=None,
                   help="device for the GPU-capable backends (default: theirs; 'gpu' with --require-gpu)")
    p.add_argument("--require-gpu", action="store_true",
                   help="the GPU-capable entries must run on a GPU: one that cannot, or whose data land on "
                        "the CPU, fails")
    p.add_argument("--time-limit", type=float, default=None, metavar="S",
                   help="seconds for the whole run: each entry gets an equal share of what is left, its "
                        "sweeps' budgets cut to fit")
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
    if args.require_gpu and args.device is None:
        args.device = "gpu"  # a GPU backend's default device may be the CPU (JAX's, where it sees no GPU)
    deadline = None if args.time_limit is None else time.monotonic() + args.time_limit
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
            _measure_all(args, env, peers + backends, shapes, keep, deadline)
        finally:
            write_report(records, out)
    if not args.quiet:
        print((out / "table.md").read_text())
        print(f"results in {out}")
    return _verdict(records, peers + backends, args.require_gpu)


def entry_outcomes(records, entries, require_gpu=False) -> dict:
    """``{entry: (outcome, why)}``: "measured", "cut" (measured, then stopped by its time share),
    "unavailable" (its library cannot run here), "not applicable" (no shape it can train) or
    "failed" (an error, no measurement, or, under ``require_gpu``, a GPU-capable entry not on a GPU)."""
    outcomes = {}
    for entry in entries:
        gpu = require_gpu and entry.partition(":")[0] in GPU_CAPABLE
        own = [r for r in records if r.get("entry") == entry]
        measured = [r for r in own if r.get("kind") == "measurement"]
        failed = [r["failed"] for r in own if "failed" in r]
        errors = [r for r in own if "error" in r and "stopped" not in r]
        on_cpu = sorted({r["device"] for r in measured if gpu and not r.get("gpu")})
        unavailable = [r["unavailable"] for r in own if "unavailable" in r]
        if failed or on_cpu:
            outcomes[entry] = ("failed", "; ".join(failed) or f"asked for a GPU, but measured on {', '.join(on_cpu)}")
        elif errors and not (measured and all(r.get("timed_out") for r in errors)):
            outcomes[entry] = ("failed", errors[0]["error"])
        elif errors:
            outcomes[entry] = ("cut", errors[0]["error"])
        elif unavailable:
            outcomes[entry] = ("failed" if gpu else "unavailable", unavailable[0])
        elif measured:
            outcomes[entry] = ("measured", ", ".join(sorted({r["device"] for r in measured})))
        elif own and all("not_applicable" in r for r in own):
            outcomes[entry] = ("not applicable", own[0]["not_applicable"])
        else:
            outcomes[entry] = ("failed", "no measurement")
    return outcomes


def _verdict(records, entries, require_gpu) -> int:
    """Say how each entry ended; 1 where one failed or none measured anything."""
    outcomes = entry_outcomes(records, entries, require_gpu)
    for entry, (outcome, why) in outcomes.items():
        print(f"{entry:>18}: {outcome}: {why}", flush=True)
    failed = [e for e, (outcome, _) in outcomes.items() if outcome == "failed"]
    if failed:
        print(f"run.py: {len(failed)} of {len(entries)} entries failed: {', '.join(failed)}", flush=True)
    if not any(outcome in ("measured", "cut") for outcome, _ in outcomes.values()):
        print("run.py: no entry measured anything", flush=True)
        return 1
    return 1 if failed else 0


def _measure_all(args, env, entries, shapes, keep, deadline=None):
    def left(default):
        return default if deadline is None else max(1.0, min(default, deadline - time.monotonic()))

    keep(env)
    limits = _run_json([sys.executable, str(HERE / "limits.py"), "--dtype", args.dtype], left(300))
    if env.get("gpu"):
        limits += _run_json([sys.executable, str(HERE / "limits.py"), "--gpu", "--dtype", args.dtype]
                            + (["--tf32"] if args.tf32 else []), left(300))
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

    for index, entry in enumerate(entries):
        runnable = []
        for shape in shapes:
            ok, why = applies(entry, *(int(v) for v in shape.split("-")))
            if ok:
                runnable.append(shape)
            else:  # the entry refuses it whatever the machine: no process is started for it
                keep({"kind": "note", "entry": entry, "shape": shape, "not_applicable": why})
        if not runnable:
            continue
        # An equal share of what is left, so that an entry that ends early leaves more to the rest.
        timeout, budget = 20 * args.budget * len(runnable) + 300, args.budget
        if deadline is not None:
            timeout = max(1.0, (deadline - time.monotonic() - REPORT_S) / (len(entries) - index))
            budget = min(budget, timeout / (2 * len(runnable)))  # a sweep overshoots; imports and warm-ups
        cmd = [sys.executable, str(HERE / "worker.py"), "--entry", entry, "--shape", ",".join(runnable),
               "--dtype", args.dtype, "--m-min", str(args.m_min), "--m-max", str(args.m_max),
               "--budget", f"{budget:.3g}", "--repeats", str(args.repeats)]
        if args.ms:
            cmd += ["--ms", ",".join(map(str, args.ms))]
        if entry.partition(":")[0] in GPU_CAPABLE:
            if args.device is not None:
                cmd += ["--device", args.device]
            if args.require_gpu:
                cmd.append("--require-gpu")
        if args.tf32:
            cmd.append("--tf32")
        if not args.quiet:
            print(f"{entry:>18} {','.join(runnable)}: at most {timeout:.0f} s", flush=True)
        for rec in _stream_json(cmd, timeout=timeout):
            rec.setdefault("entry", entry)
            rec.setdefault("shape", ",".join(runnable))
            rec["kind"] = "measurement" if "examples_per_s" in rec else "note"
            if rec["kind"] == "measurement":
                floor = floor_of.get((rec["shape"], rec.get("gpu", False)))
                rec["fraction_of_floor"] = rec["examples_per_s"] / floor if floor else None
            keep(rec)
            if not args.quiet:
                if "examples_per_s" in rec:
                    print(f"{entry:>18} {rec['shape']:>10} m={rec['m']:>11,} {rec['examples_per_s']:>14,.0f} ex/s"
                          f" on {rec['device']}{'' if rec['trained'] else '  NOT TRAINING'}", flush=True)
                else:
                    print(f"{entry:>18} {rec['shape']:>10} {json.dumps({k: v for k, v in rec.items() if k not in ('entry', 'shape', 'kind')})}", flush=True)


#: Seconds of a time limit kept for writing the table and the plot at the end.
REPORT_S = 10


if __name__ == "__main__":
    sys.exit(main())
