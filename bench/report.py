"""The markdown table and the plot, made from the records of one run."""

from __future__ import annotations

from collections import defaultdict

from worker import PEERS


def _fmt(rate: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rate >= scale:
            return f"{rate / scale:.3g} {unit}/s"
    return f"{rate:.3g} /s"


def _by_entry_shape(records):
    table = defaultdict(dict)
    for r in records:
        if r.get("kind") == "measurement" and r["trained"]:
            table[(r["entry"], r["shape"])][r["m"]] = r
    return table


def write_table(records, path) -> None:
    env = next(r for r in records if r.get("kind") == "environment")
    runs = _by_entry_shape(records)
    shapes = list(dict.fromkeys(r["shape"] for r in records if r.get("kind") == "measurement"))
    lines = [f"# Throughput of one full-batch training step ({env['dtype']})", "",
             f"Machine: {env.get('gpu') or 'no GPU'}; CPU {env['cpu']} x {env['cpu_count']}; "
             f"{env['date']}; TF32 {'on' if env['tf32'] else 'off'}; median of {env['repeats']} repeats.", ""]
    for lim in (r for r in records if r.get("kind") == "limits" and "copy_bytes_per_s" in r):
        lines.append(f"Limits measured on {lim['device']}: copy {lim['copy_bytes_per_s'] / 1e9:.1f} GB/s (read + write), "
                     f"matmul {lim['matmul_flops_per_s'] / 1e12:.3g} TFLOP/s.")
    lines += ["", "Examples/s at the largest m that every entry reached for the shape; "
              "x numpy and x best peer are ratios of throughputs; % floor is the share of the "
              "bandwidth/FLOP floor of the entry's device.", ""]
    for shape in shapes:
        entries = [e for (e, s) in runs if s == shape]
        common = set.intersection(*(set(runs[(e, shape)]) for e in entries)) if entries else set()
        if not common:
            continue
        m = max(common)
        peer_rates = [runs[(e, shape)][m]["examples_per_s"] for e in entries if e in PEERS]
        best_peer = max(peer_rates) if peer_rates else None
        numpy_rate = runs.get(("numpy", shape), {}).get(m, {}).get("examples_per_s")
        lines += [f"## {shape}, m = {m:,} (2^{m.bit_length() - 1})", "",
                  "| entry | device | examples/s | x numpy | x best peer | % floor | transfer to device | largest m run | best examples/s (at m) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for e in sorted(entries, key=lambda e: -runs[(e, shape)][m]["examples_per_s"]):
            r = runs[(e, shape)][m]
            rate = r["examples_per_s"]
            best = max(runs[(e, shape)].values(), key=lambda q: q["examples_per_s"])
            frac = r.get("fraction_of_floor")
            lines.append(f"| {e}{' (peer)' if e in PEERS else ''} | {r.get('device', '')} | {_fmt(rate)} |"
                         + (f" {rate / numpy_rate:.2f} |" if numpy_rate else " - |"))
            lines[-1] += (f" {rate / best_peer:.2f} |" if best_peer else " - |")
            lines[-1] += (f" {100 * frac:.2g}% |" if frac else " - |")
            lines[-1] += f" {1e3 * r['transfer_s']:.3g} ms |"
            lines[-1] += f" {max(runs[(e, shape)]):,} | {_fmt(best['examples_per_s'])} ({best['m']:,}) |"
        lines.append("")
    lines += default_against_the_rest(runs, shapes)
    notes = [r for r in records if r.get("kind") == "note"]
    if notes:
        lines += ["Notes:", ""]
        for r in notes:
            detail = {k: v for k, v in r.items() if k not in ("entry", "shape", "kind")}
            lines.append(f"- {r['entry']} {r['shape']}: {detail}")
    untrained = [r for r in records if r.get("kind") == "measurement" and not r["trained"]]
    for r in untrained:
        lines.append(f"- {r['entry']} {r['shape']} m={r['m']}: the step did NOT train; excluded")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def default_against_the_rest(runs, shapes, default="numpy") -> list[str]:
    """Markdown lines: at every m the default entry ran, its rate beside the fastest other
    entry's (peer or backend) at that same m, and their ratio (the table above compares one m)."""
    lines = []
    for shape in shapes:
        mine = runs.get((default, shape), {})
        rows = []
        for m in sorted(mine):
            others = {e: by_m[m]["examples_per_s"] for (e, s), by_m in runs.items()
                      if s == shape and e != default and m in by_m}
            if others:
                best = max(others, key=others.get)
                rate = mine[m]["examples_per_s"]
                rows.append(f"| 2^{m.bit_length() - 1} | {_fmt(rate)} | {best}{' (peer)' if best in PEERS else ''} | "
                            f"{_fmt(others[best])} | {rate / others[best]:.2f} |")
        if rows:
            lines += [f"## {default} against the fastest other entry at each m: {shape}", "",
                      f"| m | {default} | fastest other | its examples/s | x |", "|---|---|---|---|---|", *rows, ""]
    return lines


def _machine(env) -> str:
    cpu = f"{env.get('cpu', 'unknown CPU')} x {env.get('cpu_count', '?')}"
    return f"{env['gpu']} (host CPU {cpu})" if env.get("gpu") else cpu


def write_plot(records, path):
    """throughput.png: examples/s against m, one panel per shape; returns the Figure.

    Drawn on a bare ``Figure`` (no pyplot), so no matplotlib backend is chosen or
    changed.  One legend for every panel, outside them, keeps the lines visible;
    each entry keeps its colour in every panel.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:  # the numbers are written; the picture needs matplotlib
        return None
    runs = _by_entry_shape(records)
    shapes = list(dict.fromkeys(s for (_, s) in runs))
    if not shapes:
        return None
    env = next((r for r in records if r.get("kind") == "environment"), {})
    entries = sorted({e for (e, _) in runs})
    # Ten colours; past ten, the line style tells entries of one colour apart (peers are dotted).
    styles = {e: (f"C{i % 10}", ":" if e in PEERS else "-" if i < 10 else "-.") for i, e in enumerate(entries)}
    fig = Figure(figsize=(5.0 * len(shapes) + 2.2, 4.6), layout="constrained")
    axes = fig.subplots(1, len(shapes), squeeze=False)[0]
    for ax, shape in zip(axes, shapes):
        for e in entries:
            if (e, shape) not in runs:
                continue
            pts = sorted(runs[(e, shape)].items())
            ax.plot([m for m, _ in pts], [r["examples_per_s"] for _, r in pts], marker="o", ms=3,
                    color=styles[e][0], linestyle=styles[e][1], label=e + (" (peer)" if e in PEERS else ""))
        for fl in (r for r in records if r.get("kind") == "floor" and r["shape"] == shape):
            ax.axhline(fl["examples_per_s"], color="0.45" if fl["gpu"] else "k", linestyle="--",
                       linewidth=1, label=f"floor ({fl['device']})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("m (examples per full batch)")
        ax.set_ylabel("examples / s")
        ax.set_title(f"shape {shape}")
        ax.grid(True, which="both", alpha=0.3)
    labelled = {}
    for ax in axes:
        for line in ax.get_lines():
            labelled.setdefault(line.get_label(), line)
    fig.legend(list(labelled.values()), list(labelled), loc="outside right upper", fontsize=8)
    fig.suptitle(f"Throughput of one full-batch training step ({env.get('dtype', 'dtype unknown')}) "
                 f"on {_machine(env)}" + (f", {env['date'][:10]}" if env.get("date") else ""))
    fig.savefig(path, dpi=110)
    return fig
