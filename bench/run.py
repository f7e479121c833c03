"""Large-m throughput of one full-batch training step, backends and peers side by side.

    python bench/run.py                       # every usable backend and peer, default shapes
    python bench/run.py --backends numpy,jax --peers torch-nn --shapes 2-4-1 --m-max 2**22

Writes ``results.jsonl`` (environment, machine limits, every measurement),
``table.md`` (headline numbers) and ``throughput.png`` (examples/s against m)
into ``--out`` (default ``bench/results/<machine>-<date>``).  Each entry runs in a
process of its own.  Nothing here asserts speed: read the output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
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
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0:
        records.append({"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}",
                        "cmd": " ".join(cmd[2:])})
    return records


def default_entries():
    from backprop_core.backends import backend_names

    # The numpy backend once more as the equations array by array, beside what its planner runs.
    names = backend_names()
    return names[:1] + ["numpy:equations"] + names[1:]


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
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

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
    records = [env]

    limits = _run_json([sys.executable, str(HERE / "limits.py"), "--dtype", args.dtype], 300)
    if env.get("gpu"):
        limits += _run_json([sys.executable, str(HERE / "limits.py"), "--gpu", "--dtype", args.dtype]
                            + (["--tf32"] if args.tf32 else []), 300)
    for rec in limits:
        rec["kind"] = "limits"
    records += limits
    itemsize = 4 if args.dtype == "float32" else 8
    for shape in shapes:
        n0, n1, n2 = (int(v) for v in shape.split("-"))
        for lim in limits:
            if "copy_bytes_per_s" in lim:
                floor = min(lim["copy_bytes_per_s"] / bytes_per_example(n0, n2, itemsize),
                            lim["matmul_flops_per_s"] / flops_per_example(n0, n1, n2))
                records.append({"kind": "floor", "shape": shape, "gpu": lim["device"] != "cpu",
                                "device": lim["device"], "examples_per_s": floor,
                                "bytes_per_example": bytes_per_example(n0, n2, itemsize),
                                "flops_per_example": flops_per_example(n0, n1, n2)})

    for entry in backends + peers:
        for shape in shapes:
            cmd = [sys.executable, str(HERE / "worker.py"), "--entry", entry, "--shape", shape,
                   "--dtype", args.dtype, "--m-min", str(args.m_min), "--m-max", str(args.m_max),
                   "--budget", str(args.budget), "--repeats", str(args.repeats)]
            if args.device is not None and entry.partition(":")[0] in ("cupy", "torch", "jax", "torch-nn"):
                cmd += ["--device", args.device]
            if args.tf32:
                cmd.append("--tf32")
            try:
                got = _run_json(cmd, timeout=20 * args.budget + 300)
            except subprocess.TimeoutExpired:
                got = [{"entry": entry, "shape": shape, "error": "worker timed out"}]
            for rec in got:
                rec.setdefault("entry", entry)
                rec.setdefault("shape", shape)
                rec["kind"] = "measurement" if "examples_per_s" in rec else "note"
                if not args.quiet:
                    if "examples_per_s" in rec:
                        print(f"{entry:>18} {shape:>10} m={rec['m']:>11,} {rec['examples_per_s']:>14,.0f} ex/s"
                              f"{'' if rec['trained'] else '  NOT TRAINING'}", flush=True)
                    else:
                        print(f"{entry:>18} {shape:>10} {json.dumps({k: v for k, v in rec.items() if k not in ('entry', 'shape', 'kind')})}", flush=True)
            records += got
            if got and "unavailable" in got[0]:
                break  # the entry cannot run here; one note is enough

    floors = {(r["shape"], r["gpu"]): r["examples_per_s"] for r in records if r.get("kind") == "floor"}
    for rec in records:
        if rec.get("kind") == "measurement":
            floor = floors.get((rec["shape"], rec.get("gpu", False)))
            rec["fraction_of_floor"] = rec["examples_per_s"] / floor if floor else None

    with open(out / "results.jsonl", "w") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    write_table(records, out / "table.md")
    write_plot(records, out / "throughput.png")
    if not args.quiet:
        print((out / "table.md").read_text())
        print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
