"""Sparsity sweep of one GEMM on the core: ``python -m sim.sweep`` (or ``sim.compare --sweep``).

``C = D @ S`` with ``D [64, 576]`` and ``S [576, 64]`` (a 3×3 conv, 64 → 64 channels, 8×8 output
pixels, after im2col) at sparsity 0, 50, 80, 90 and 95 % (``--sparsities`` to change). ``S``
keeps exactly ``ceil(density·K·N)`` non-zeros at uniformly random positions (unstructured, like
Top-K over the whole tensor), so columns hold different counts. Prints and writes
``results/sweep.{md,csv,json}`` and ``results/speedup_sweep.png``: RTL cycles, utilization
(``M·nnz / (PEs·cycles)``) and speedup over the same core on the dense ``S``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import compare_args, verilate

SPARSITIES = (0.0, 0.5, 0.8, 0.9, 0.95)
SHAPE = (64, 576, 64)


def make_s(rng, k, n, density):
    s = rng.integers(-127, 128, (k, n)).astype(np.int8)
    s[s == 0] = 1
    keep = int(np.ceil(round(density * k * n, 6)))
    mask = np.zeros(k * n, dtype=bool)
    mask[rng.permutation(k * n)[:keep]] = True
    return np.where(mask.reshape(k, n), s, 0).astype(np.int8)


def run_sweep(*, array=(8, 8), sparsities=SPARSITIES, shape=SHAPE, seed=0, out=None,
              quiet=False, model=None, parallel=None) -> list[dict]:
    from . import gemm

    m, k, n = shape
    rng = np.random.default_rng(seed)
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    sps = sorted(set([0.0, *sparsities]))
    jobs = [(d, make_s(rng, k, n, 1 - sp)) for sp in sps]
    model = model or verilate.harness_model(*array)
    t0 = time.monotonic()
    res = gemm.run_gemms(jobs, model=model, parallel=parallel)
    wall = time.monotonic() - t0
    batch = res.stats
    dense = res[0].cycles
    rows = []
    for sp, (dd, s), r in zip(sps, jobs, res, strict=True):
        exact = bool(np.array_equal(r.c.astype(np.int64), dd.astype(np.int64)
                                    @ s.astype(np.int64)))
        rows.append({
            "sparsity": sp, "density": round(r.density, 4), "nnz": r.nnz, "cycles": r.cycles,
            "ideal_cycles": round(r.ideal_cycles, 1), "utilization": round(r.utilization, 4),
            "speedup": round(dense / r.cycles, 3), "max_speedup": round(1 / (1 - sp), 2)
            if sp < 1 else None, "core_runs": r.runs, "bit_exact": exact,
        })
    info = {"shape": list(shape), "array": f"{array[0]}x{array[1]}", "wall_s": round(wall, 2),
            "simulated_cycles": batch.cycles, "cycles_per_s": round(batch.cycles_per_second),
            "cycles_per_cpu_s": round(batch.cycles_per_cpu_second)}
    if not quiet:
        print(f"GEMM {m}x{k} @ {k}x{n} on the {array[0]}x{array[1]} core "
              f"({info['cycles_per_s']:,} simulated cycles/s, "
              f"{info['cycles_per_cpu_s']:,} per CPU second)")
        print(f"{'sparsity':>8} {'cycles':>8} {'ideal':>8} {'util':>7} {'speedup':>8} "
              f"{'max':>6} exact")
        for r in rows:
            print(f"{r['sparsity']:>8.0%} {r['cycles']:>8} {r['ideal_cycles']:>8.0f} "
                  f"{r['utilization']:>7.1%} {r['speedup']:>7.2f}x {r['max_speedup']:>5.1f}x "
                  f"{r['bit_exact']}")
    if out is not None:
        write(Path(out), rows, info)
    return rows


def write(out: Path, rows, info) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "sweep.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "sweep.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    m, k, n = info["shape"]
    lines = [
        f"# Sparsity sweep: {m}×{k} @ {k}×{n} on the {info['array']} core",
        "",
        "S: exact count of non-zeros at uniformly random positions; D dense random int8. "
        "Speedup is over the same core on the dense S; utilization = M·nnz / (PEs·cycles).",
        "",
        "| sparsity | nnz(S) | RTL cycles | ideal cycles | utilization | speedup | 1/density |"
        " bit-exact |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['sparsity']:.0%} | {r['nnz']} | {r['cycles']} | "
                     f"{r['ideal_cycles']:.0f} | {r['utilization']:.1%} | {r['speedup']:.2f}× | "
                     f"{r['max_speedup']:.1f}× | {r['bit_exact']} |")
    lines += ["", f"Simulated {info['simulated_cycles']:,} cycles in {info['wall_s']} s "
              f"({info['cycles_per_s']:,} cycles per wall second, {info['cycles_per_cpu_s']:,} per "
              "CPU second of the simulator)."]
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    plot_sweep(rows, out / "speedup_sweep.png")


def plot_sweep(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sp = [r["sparsity"] * 100 for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sp, [r["speedup"] for r in rows], "o-", label="RTL speedup vs dense")
    ax.plot(sp, [r["max_speedup"] for r in rows], "--", color="gray", label="1 / density")
    ax.plot([90], [5.6], "s", color="C3", label="paper's accelerator (fwd, 90 %)")
    ax2 = ax.twinx()
    ax2.plot(sp, [r["utilization"] * 100 for r in rows], "^:", color="C2", label="utilization")
    ax2.set_ylabel("utilization (%)")
    ax2.set_ylim(0, 105)
    ax.set_xlabel("sparsity of S (%)")
    ax.set_ylabel("speedup (×)")
    ax.set_yscale("log")
    ax.set_title("64×576 @ 576×64 on the 8×8 core")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="center left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.sweep", description=__doc__.split("\n")[0])
    ap.add_argument("--array", type=compare_args.array, default=(8, 8))
    ap.add_argument("--out", default="results")
    ap.add_argument("--sparsities", type=float, nargs="+", default=list(SPARSITIES))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = run_sweep(array=args.array, sparsities=args.sparsities, seed=args.seed,
                     out=args.out)
    return 0 if all(r["bit_exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
