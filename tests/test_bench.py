"""The benchmark harness end to end at tiny m (it never asserts speed)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import worker  # noqa: E402
from backprop_core.lowering import build_cache  # noqa: E402


def test_harness_runs_end_to_end(tmp_path):
    out = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--backends", "numpy", "--peers", "none",
         "--shapes", "2-4-1,8-16-2", "--m-min", "256", "--m-max", "1024", "--repeats", "3",
         "--budget", "30", "--out", str(tmp_path), "--quiet"],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    env = records[0]
    assert env["kind"] == "environment"
    for key in ("date", "cpu", "cpu_count", "numpy", "dtype", "tf32", "blas_threads"):
        assert key in env, key
    limits = [r for r in records if r["kind"] == "limits"]
    assert limits and all(r["copy_bytes_per_s"] > 0 and r["matmul_flops_per_s"] > 0 for r in limits)
    floors = [r for r in records if r["kind"] == "floor"]
    assert {r["shape"] for r in floors} == {"2-4-1", "8-16-2"}
    measurements = [r for r in records if r["kind"] == "measurement"]
    assert {(r["shape"], r["m"]) for r in measurements} == {(s, m) for s in ("2-4-1", "8-16-2") for m in (256, 512, 1024)}
    for r in measurements:
        for key in ("examples_per_s", "step_median_s", "step_min_s", "step_max_s", "transfer_s", "fraction_of_floor"):
            assert math.isfinite(r[key]) and r[key] > 0, (key, r)
        assert r["step_min_s"] <= r["step_median_s"] <= r["step_max_s"]
        assert r["trained"] is True and r["cost_after"] < r["cost_before"]
    table = (tmp_path / "table.md").read_text()
    assert "## 2-4-1, m = 1,024" in table and "| numpy | cpu |" in table
    assert "## numpy against the fastest other entry at each m: 2-4-1" not in table  # numpy alone
    png = (tmp_path / "throughput.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_default_is_set_against_the_fastest_other_entry_at_each_m():
    import report

    def run(rate, m):
        return {m: {"examples_per_s": rate, "m": m}}

    runs = {("numpy", "2-4-1"): {**run(10.0, 1024), **run(30.0, 2048)},
            ("jax", "2-4-1"): {**run(20.0, 1024), **run(15.0, 2048)},
            ("torch-nn", "2-4-1"): run(12.0, 2048)}
    lines = report.default_against_the_rest(runs, ["2-4-1"])
    assert lines[0] == "## numpy against the fastest other entry at each m: 2-4-1"
    assert "| 2^10 | 10 /s | jax | 20 /s | 0.50 |" in lines
    assert "| 2^11 | 30 /s | jax | 15 /s | 2.00 |" in lines


def test_trained_step_check_rejects_a_step_that_does_nothing():
    p = {"W1": np.ones((2, 2)), "b1": np.zeros((2, 1))}
    assert not worker.trained(p, {k: v.copy() for k, v in p.items()}, 0.7, 0.7)
    moved = {"W1": p["W1"] + 1e-3, "b1": p["b1"]}
    assert not worker.trained(p, moved, 0.7, 0.71)        # changed but the cost rose
    assert not worker.trained(p, moved, 0.7, float("nan"))
    assert worker.trained(p, moved, 0.7, 0.69)


def test_floor_arithmetic_matches_design():
    assert worker.flops_per_example(784, 512, 1) == 4 * 784 * 512 + 6 * 512  # about 1.6 MFLOP
    assert worker.bytes_per_example(2, 1, 4) == 12


def test_chunk_study_runs_end_to_end(tmp_path):
    out = subprocess.run(
        [sys.executable, str(BENCH / "chunks.py"), "--shapes", "2-4-1", "--ms", "12", "--chunks", "1,2,4",
         "--repeats", "2", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in (tmp_path / "chunks.jsonl").read_text().splitlines()][1:]
    assert {(r["mode"], r["chunks"]) for r in rows} == {("numpy, whole batch", 1)} | {
        (mode, k) for mode in ("numpy, chunked", "dask, threads") for k in (1, 2, 4)}
    assert all(r["seconds"] > 0 and math.isfinite(r["examples_per_s"]) for r in rows)
    assert "| 2^12 | numpy, chunked |" in (tmp_path / "chunks.md").read_text()
    assert (tmp_path / "chunks.png").read_bytes()[:4] == b"\x89PNG"


def _study(script, ms, stem, out):
    """Run a study of the step of 16-8-1 over 2^ms examples into ``out``: its env record and rows."""
    pytest.importorskip("torch", reason="torch is not installed")
    done = subprocess.run([sys.executable, str(BENCH / script), "--shape", "16-8-1", "--ms", ms, "--repeats", "2",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    env, *rows = [json.loads(line) for line in (out / f"{stem}.jsonl").read_text().splitlines()]
    return env, rows


def test_blas_study_times_both_products_with_both_libraries(tmp_path):
    env, rows = _study("blas_study.py", "6", "blas", tmp_path)
    assert env["kind"] == "environment" and env["torch_blas"] and env["numpy_blas"]
    threads = sorted({1, os.cpu_count() or 1})
    assert {(r["library"], r["product"], r["threads"]) for r in rows} == {
        (lib, product, t) for lib in ("numpy", "torch") for product in ("forward W1 X", "backward dZ1 X^T")
        for t in threads}
    assert all(r["m"] == 64 and r["gflops"] == pytest.approx(2 * 16 * 8 * 64 / r["seconds"] / 1e9) for r in rows)
    assert "| 2^6 | 1 | forward W1 X |" in (tmp_path / "blas.md").read_text()


def test_step_anatomy_times_the_step_its_products_and_the_peer(tmp_path):
    env, rows = _study("step_anatomy.py", "6,7", "step", tmp_path)
    assert env["kind"] == "environment" and env["shape"] == "16-8-1" and env["numpy_blas"]
    assert [r["m"] for r in rows] == [64, 128]
    assert all(r[key] > 0 for r in rows for key in ("numpy step", "its two products", "torch nn.Linear step (peer)"))
    assert "| 2^7 |" in (tmp_path / "step.md").read_text()


@pytest.mark.skipif(build_cache.c_compiler() is None, reason="no C compiler (gcc or cc) here for the fused CPU step")
def test_the_sample_order_study_times_the_fused_step_after_each_predecessor(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "sample_order.py"), "--m", "2**8", "--rounds", "5"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BACKPROP_CORE_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("2-4-1, m = 256, float32") and "5 rounds" in lines[0]
    assert [line.split("  ")[0].strip() for line in lines[1:]] == [
        "after the fallback's step (cold)", "after it and one untimed step of its own (warm)",
        "after it and a step on 1 thread", "after it and 3 untimed steps of its own",
        "after a step of its own, nothing else (a fit)"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc/self/task")
def test_the_blas_spin_study_reports_each_round_after_the_product_and_after_settling(tmp_path):
    out = tmp_path / "spin.txt"
    done = subprocess.run([sys.executable, str(BENCH / "blas_spin.py"), "--size", "300", "--rounds", "2",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("BLAS on ") and len(lines) == 5
    assert all("after the product" in line for line in lines[1:3])
    assert all("settled waited" in line and "in 50 ms" in line for line in lines[3:])


@pytest.mark.parametrize("device", [None, "cpu", 0, "0", "gpu", "cuda:0"])
def test_the_plain_pytorch_peer_takes_the_device_vocabulary_of_the_library(device):
    """run.py passes --device to every GPU entry alike: the peer resolves it as the torch backend does."""
    pytest.importorskip("torch", reason="the peer is plain PyTorch")
    from backprop_core.backends import BackendUnavailableError, get_backend

    try:
        expected = get_backend("torch", device).device
    except BackendUnavailableError:  # a GPU spelling where no GPU is usable
        with pytest.raises(BackendUnavailableError):
            worker.make_entry("torch-nn", device, "float32", 0.1)
    else:
        assert worker.make_entry("torch-nn", device, "float32", 0.1).device == expected


# -- what a run says of each entry, and its exit status ----------------------------------------------------
def _run(tmp_path, *args):
    done = subprocess.run([sys.executable, str(BENCH / "run.py"), "--shapes", "2-4-1", "--m-min", "256",
                           "--m-max", "256", "--repeats", "2", "--budget", "30", "--out", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=600)
    return done, [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]


def test_an_entry_whose_data_are_on_the_cpu_fails_where_a_gpu_is_required():
    pytest.importorskip("torch", reason="the entry is torch, asked for the CPU")
    done = subprocess.run([sys.executable, str(BENCH / "worker.py"), "--entry", "torch", "--device", "cpu",
                           "--shape", "2-4-1", "--m-min", "256", "--m-max", "256", "--require-gpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    record = json.loads(done.stdout.splitlines()[-1])
    assert record["device"] == "cpu" and record["gpu"] is False
    assert record["failed"] == "asked for a GPU, but its data are on cpu: the backend fell back to the CPU"
    assert "examples_per_s" not in done.stdout  # nothing was timed on the CPU


def test_a_run_requiring_a_gpu_fails_the_entry_on_the_cpu_and_keeps_the_cpu_only_one(tmp_path):
    pytest.importorskip("torch", reason="the entry is torch, asked for the CPU")
    done, records = _run(tmp_path, "--backends", "numpy,torch", "--peers", "none", "--device", "cpu",
                         "--require-gpu")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "torch: failed: asked for a GPU, but its data are on cpu" in done.stdout
    assert "numpy: measured: cpu" in done.stdout  # a CPU library is not held to the GPU
    assert "run.py: 1 of 2 entries failed: torch" in done.stdout
    assert {r["entry"] for r in records if r["kind"] == "measurement"} == {"numpy"}


def test_every_measurement_names_the_device_its_data_were_on(tmp_path):
    done, records = _run(tmp_path, "--backends", "numpy", "--peers", "none")
    assert done.returncode == 0, done.stdout + done.stderr
    (measurement,) = [r for r in records if r["kind"] == "measurement"]
    assert (measurement["device"], measurement["gpu"]) == ("cpu", False)
    assert "numpy: measured: cpu" in done.stdout


def test_a_run_where_no_entry_measures_anything_exits_1_and_says_why(tmp_path):
    done, records = _run(tmp_path, "--backends", "no_such_library", "--peers", "none")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no_such_library: unavailable: " in done.stdout
    assert "run.py: no entry measured anything" in done.stdout


def test_the_fused_entry_is_not_started_for_a_shape_its_kernel_refuses(tmp_path):
    from backprop_core.lowering.cuda_fused.limits import fused_support

    done, records = _run(tmp_path, "--backends", "cupy:fused", "--peers", "none", "--shapes", "64-64-1")
    (note,) = [r for r in records if r.get("entry") == "cupy:fused"]  # no worker's record: none was started
    assert note == {"kind": "note", "entry": "cupy:fused", "shape": "64-64-1",
                    "not_applicable": fused_support(64, 64, 1)[1]}
    assert fused_support(64, 64, 1)[0] is False and fused_support(2, 4, 1)[0] is True
    assert "cupy:fused: not applicable: a 64-64-1 network needs" in done.stdout
    assert done.returncode == 1  # nothing was measured


TIMED_OUT = {"error": "worker timed out after 20 s", "timed_out": True}


@pytest.mark.parametrize("records, outcome", [
    ([{"kind": "measurement", "device": "cuda:0", "gpu": True}], ("measured", "cuda:0")),
    ([{"kind": "measurement", "device": "cuda:0", "gpu": True}, {"kind": "note", **TIMED_OUT}],
     ("cut", TIMED_OUT["error"])),
    ([{"kind": "note", **TIMED_OUT}], ("failed", TIMED_OUT["error"])),
    ([{"kind": "measurement", "device": "cuda:0", "gpu": True},
      {"kind": "note", "error": "RuntimeError: boom", "timed_out": False}], ("failed", "RuntimeError: boom")),
    ([{"kind": "measurement", "device": "cpu:0", "gpu": False}], ("failed", "asked for a GPU, but measured on cpu:0")),
    ([{"kind": "note", "unavailable": "no GPU"}], ("failed", "no GPU")),
    ([{"kind": "note", "m": 2**30, "stopped": "out of memory", "error": "cudaErrorMemoryAllocation"},
      {"kind": "measurement", "device": "cuda:0", "gpu": True}], ("measured", "cuda:0")),
    ([], ("failed", "no measurement")),
], ids=["measured", "cut after measuring", "timed out before", "error", "on the cpu", "unavailable",
        "stopped by memory", "nothing"])
def test_each_entry_ends_in_one_named_outcome_where_a_gpu_is_required(records, outcome):
    import run

    records = [{"entry": "jax", **r} for r in records]
    assert run.entry_outcomes(records, ["jax"], require_gpu=True) == {"jax": outcome}


def test_without_a_gpu_required_an_unavailable_library_is_not_a_failure():
    import run

    records = [{"entry": "cupy", "unavailable": "no GPU"}, {"entry": "numpy", "kind": "measurement", "device": "cpu",
                                                              "gpu": False}]
    assert run.entry_outcomes(records, ["cupy", "numpy"]) == {"cupy": ("unavailable", "no GPU"),
                                                               "numpy": ("measured", "cpu")}


def test_a_run_measures_only_the_ms_asked_for(tmp_path):
    done, records = _run(tmp_path, "--backends", "numpy", "--peers", "none", "--ms", "2**8,1<<10")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r["m"] for r in records if r["kind"] == "measurement"] == [256, 1024]


@pytest.mark.skipif(build_cache.c_compiler() is None, reason="no C compiler (gcc or cc) here for the fused CPU step")
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="the CPU accounting reads Linux's /proc")
def test_the_plan_cpu_study_accounts_each_planner_measurement_and_the_idle_time_after(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "plan_cpu.py"), "--ms", "2**9", "--rounds", "1"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BACKPROP_CORE_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for m in ("64", "512"):
        assert f"cpu-fused timed against the fallback at m = {m}: " in out
        assert f"m = {m}: 0.5 s after, idle: " in out and f"plan at m = {m}: " in out
    assert "the fused step's thread counts timed as the planner times them at m = 512, round 1:" in out
    assert "    1 thread(s): " in out


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="the CPU accounting reads Linux's /proc")
def test_the_cpu_account_names_a_thread_left_running(capsys):
    import threading
    import time

    import plan_cpu

    before, stop = plan_cpu._snapshot(), threading.Event()
    spinner = threading.Thread(target=lambda: [None for _ in iter(stop.is_set, True)], name="left-running")
    spinner.start()  # what a plan might leave behind: a thread that keeps a core busy
    time.sleep(0.25)
    after = plan_cpu._snapshot()
    stop.set()
    spinner.join()
    plan_cpu._account("a phase", before, after)
    lines = [line for line in capsys.readouterr().out.splitlines() if f"thread {spinner.native_id} " in line]
    assert lines and float(lines[0].split("ran ")[1].split(" ms")[0]) >= 50, lines  # it spun, whatever the load


def test_the_next_m_is_predicted_with_the_planners_time_once_not_scaled_with_m():
    # The numpy entry at 2^16 on the 2-core machine: 0.4 ms steps, 2.75 s loading of which 2.7 s planning.
    record = {"m": 1 << 16, "step_median_s": 4e-4, "transfer_s": 2.75, "plan_s": 2.7}
    predicted = worker.next_seconds(record, 1 << 21, repeats=7, warmup=2)
    assert predicted == pytest.approx(32 * (4e-4 * 11 + 0.05) + 2.7)  # steps and data scale, planning does not
    assert worker.next_seconds({**record, "plan_s": 0.0}, 1 << 21, 7, 2) == pytest.approx(32 * (4e-4 * 11 + 2.75))


def test_a_measurement_says_how_long_the_planner_took(tmp_path):
    done, records = _run(tmp_path, "--backends", "numpy", "--peers", "none", "--ms", "2**8")
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = [r for r in records if r["kind"] == "measurement"]
    assert 0.0 < record["plan_s"] <= record["transfer_s"]
