"""Fuzz the core's loader with malformed compressed-S blobs (``nox -s fuzz``).

``python -m sim.fuzz [--count 10000] [--seed 0] [--array 8x8]`` runs random malformed blobs
through the Verilator model of the core in *one* simulator process (:class:`sim.harness.CoreSim`),
each followed by a good job. Each malformed blob is a valid blob of a random small GEMM with
one edit: bit flips, truncation (``s_len`` short), extension (extra words, ``s_len`` long),
a column pointer, an entry's row index, the order of two entries, a zero value, or a header
word (magic, ``K``/``N``, ``nnz``, reserved). Before each operation every C buffer word is set
to a sentinel; afterwards the words outside the operation's result region must still hold it.

Each case is judged against :func:`sw.intref.core_model` (the loader's checks, in hardware
order):

* **error-flagged** — the core raised ``error`` with a code the reference allows;
* **accepted-and-exact** — no error, the reference also accepts, and C is ``D @ S`` of the
  (edited) blob bit for bit;
* **hung** — no ``done`` within the timeout (must be 0);
* **out-of-bounds writes** — a C word outside the result region changed (must be 0);
* **wrong results** — an accepted blob with a wrong C, a rejected good blob, an error code the
  reference does not allow, or a wrong good job after the malformed one (must be 0).

The first few failures are printed with the command that replays one case (``--case I``), with
``--waves out.fst`` for its waveform.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from hw.contract.blob import MAGIC, encode_words
from hw.contract.codes import TIMEOUT_CODE, LoaderError
from hw.contract.words import pack_d, unpack_c

EDITS = ("bitflip", "truncate", "extend", "pointer", "index", "order", "zero", "header")
SENTINEL = -0x21524111  # 0xDEADBEEF as int32


@dataclass
class Counts:
    cases: int = 0
    error_flagged: int = 0
    accepted_exact: int = 0
    hung: int = 0
    oob_writes: int = 0
    wrong: int = 0
    by_edit: dict = field(default_factory=dict)
    by_code: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.hung == 0 and self.oob_writes == 0 and self.wrong == 0


def _gemm_case(rng, lim):
    """A random small good GEMM that fits the buffers: (d, s)."""
    rows = lim["rows"]
    m = int(rng.integers(1, 3 * rows + 1))
    k = int(rng.integers(1, 40))
    n = int(rng.integers(1, 12))
    d = rng.integers(-128, 128, (m, k)).astype(np.int8)
    s = rng.integers(-128, 128, (k, n)).astype(np.int8)
    s[rng.random((k, n)) >= rng.choice([0.05, 0.2, 0.5, 1.0])] = 0
    return d, s


def _edit(rng, w: np.ndarray, k: int, n: int):
    """One malformation of blob ``w``; returns ``(words, s_len, kind)``."""
    w = w.astype(np.uint32).copy()
    nnz = int(w[2])
    kind = EDITS[int(rng.integers(len(EDITS)))]
    s_len = len(w)
    if kind == "bitflip":
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(w)))
            w[i] ^= np.uint32(1 << int(rng.integers(32)))
    elif kind == "truncate":
        s_len = int(rng.integers(0, len(w)))
        w = w[:max(s_len, 1)]
    elif kind == "extend":
        extra = rng.integers(0, 1 << 32, int(rng.integers(1, 6)), dtype=np.uint64)
        w = np.concatenate([w, extra.astype(np.uint32)])
        s_len = len(w)
    elif kind == "pointer":
        i = 4 + int(rng.integers(n))
        w[i] = np.uint32(int(rng.choice([int(w[i]) + 1, max(0, int(w[i]) - 1), nnz + 1,
                                         int(rng.integers(1 << 32))])) & 0xFFFFFFFF)
    elif kind in ("index", "order", "zero") and nnz:
        e = 4 + n + int(rng.integers(nnz))
        if kind == "index":
            w[e] = (w[e] & np.uint32(0xFFFF0000)) | np.uint32(int(rng.integers(k, 0x10000)))
        elif kind == "order":
            # the previous entry of the same column (or a duplicate of this one's index)
            j = e - 1 if e > 4 + n else e + 1 if e + 1 < len(w) else e
            w[e] = (w[e] & np.uint32(0xFFFF0000)) | (w[j] & np.uint32(0xFFFF))
        else:
            w[e] &= np.uint32(0xFF00FFFF)
    elif kind in ("index", "order", "zero"):  # no entries: edit the count instead
        w[2] = np.uint32(int(rng.integers(1, 4)))
    else:  # header
        i = int(rng.integers(4))
        if i == 0:
            w[0] = np.uint32(MAGIC ^ (1 << int(rng.integers(32))))
        elif i == 1:
            kk, nn = k + int(rng.choice([-1, 1])), n + int(rng.choice([-1, 0, 1]))
            w[1] = np.uint32((kk & 0xFFFF) | ((nn & 0xFFFF) << 16))
        elif i == 2:
            w[2] = np.uint32(int(rng.choice([nnz + 1, max(0, nnz - 1), int(rng.integers(1 << 32))]))
                             & 0xFFFFFFFF)
        else:
            w[3] = np.uint32(int(rng.integers(1, 1 << 32)))
    return w, s_len, kind


def _limits(core) -> dict:
    return {"rows": core.rows, "cols": core.cols, "d": core.d_depth, "s": core.s_depth,
            "c": core.c_depth}


def _run_one(core, d, words, s_len, m, k, n, sentinel_words):
    """Run one operation with C pre-filled; ``(stats, C words of the region, oob count)``."""
    core.fill_c(sentinel_words)
    core.write_d(pack_d(d, core.rows))
    core.write_s(words)
    stats, _ = core.run(m, k, n, s_len, read_c=False)
    cbuf = core.read_c()
    region = min(-(-m // core.rows) * n, core.c_depth)
    oob = int((cbuf[region:] != sentinel_words).any(axis=1).sum()) + stats["log_oob"]
    return stats, cbuf[:region], oob


def fuzz(count: int = 10_000, seed: int = 0, *, core=None, cases=None, log=None,
         waves: str | None = None) -> Counts:
    """Run ``count`` malformed blobs (each followed by a good job); return the counts.

    ``cases``: only these case numbers (replaying a failure: the random stream is the same).
    """
    from sw import intref

    from .harness import CoreSim

    own = core is None
    if own:
        core = CoreSim(trace=bool(waves))
    try:
        lim = _limits(core)
        rows = core.rows
        sentinel = np.full(rows, SENTINEL, dtype=np.int32)
        out = Counts()
        for case in range(count):
            rng = np.random.default_rng([seed, case])
            if cases is not None and case not in cases:
                continue
            if waves:
                core.trace(waves)
            d, s = _gemm_case(rng, lim)
            m, k = d.shape
            n = s.shape[1]
            good = encode_words(s)
            words, s_len, kind = _edit(rng, good, k, n)
            ref = intref.core_model(d, words, m=m, k=k, n=n, s_len=s_len, rows=rows,
                                    d_depth=lim["d"], s_depth=lim["s"], c_depth=lim["c"])
            stats, cw, oob = _run_one(core, d, words, s_len, m, k, n, sentinel)
            out.cases += 1
            out.by_edit[kind] = out.by_edit.get(kind, 0) + 1
            problem = None
            if stats["code"] == TIMEOUT_CODE and stats["error"]:
                out.hung += 1
                problem = "hung"
            elif stats["error"]:
                out.error_flagged += 1
                code = stats["code"]
                out.by_code[code] = out.by_code.get(code, 0) + 1
                if code not in {int(c) for c in ref.error_codes} or \
                        ref.error_codes == {LoaderError.NONE}:
                    out.wrong += 1
                    problem = (f"error code {code}, reference allows "
                               f"{sorted(int(c) for c in ref.error_codes)}")
            else:
                got = unpack_c(cw, m, n, rows)
                if ref.c is not None and np.array_equal(got, ref.c):
                    out.accepted_exact += 1
                else:
                    out.wrong += 1
                    problem = ("accepted a blob the reference rejects with "
                               f"{sorted(int(c) for c in ref.error_codes)}" if ref.c is None
                               else "accepted with a wrong C")
            if oob:
                out.oob_writes += 1
                problem = (problem + "; " if problem else "") + f"{oob} C words outside the " \
                    "result region changed"
            # the good job after it must be right (no state leaks from the malformed one)
            d2, s2 = _gemm_case(rng, lim)
            w2 = encode_words(s2)
            st2, cw2, oob2 = _run_one(core, d2, w2, len(w2), d2.shape[0], d2.shape[1],
                                      s2.shape[1], sentinel)
            if st2["error"] or oob2 or not np.array_equal(
                    unpack_c(cw2, d2.shape[0], s2.shape[1], rows),
                    d2.astype(np.int32) @ s2.astype(np.int32)):
                out.wrong += 1
                problem = (problem + "; " if problem else "") + \
                    f"the good job after it failed (error {st2['code']}, oob {oob2})"
            if problem:
                out.failures.append({"case": case, "edit": kind, "shape": [m, k, n],
                                     "problem": problem})
                if log and len(out.failures) <= 5:
                    log(f"case {case} ({kind}, M={m} K={k} N={n}): {problem}\n  replay with "
                        f"waves: python -m sim.fuzz --seed {seed} --case {case} "
                        f"--waves fuzz-{case}.fst")
        if waves:
            core.trace(None)
        return out
    finally:
        if own:
            core.close()


def main(argv=None) -> int:
    from . import verilate
    from .compare_args import array
    from .harness import CoreSim

    ap = argparse.ArgumentParser(prog="python -m sim.fuzz", description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=10_000, help="malformed blobs (default 10000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--array", type=array, default=(8, 8))
    ap.add_argument("--case", type=int, action="append", help="replay only this case number")
    ap.add_argument("--waves", metavar="FILE.fst", help="dump an FST of the replayed case(s)")
    ap.add_argument("--json", metavar="FILE", help="write the counts as JSON")
    args = ap.parse_args(argv)
    if args.count < 1:
        ap.error("--count must be >= 1")
    if args.waves and not args.case:
        ap.error("--waves needs --case (a waveform of one replayed case)")
    count = max(args.case) + 1 if args.case else args.count
    t0 = time.monotonic()
    model = verilate.harness_model(*args.array, trace=bool(args.waves), quiet=False)
    t_build = time.monotonic() - t0
    t1 = time.monotonic()
    with CoreSim(model) as core:
        res = fuzz(count, args.seed, core=core, cases=set(args.case) if args.case else None,
                   log=lambda s: print(s, file=sys.stderr, flush=True), waves=args.waves)
        ticks = core.ticks
    wall = time.monotonic() - t1
    summary = {
        "cases": res.cases, "error_flagged": res.error_flagged,
        "accepted_exact": res.accepted_exact, "hung": res.hung,
        "out_of_bounds_writes": res.oob_writes, "wrong_results": res.wrong,
        "by_edit": dict(sorted(res.by_edit.items())),
        "by_error_code": {str(k): v for k, v in sorted(res.by_code.items())},
        "seed": args.seed, "wall_s": round(wall, 1), "model_s": round(t_build, 1),
        "simulated_cycles": ticks, "failures": res.failures[:20],
    }
    print(f"fuzz: {res.cases} malformed blobs (+ a good job after each) in {wall:.1f} s: "
          f"{res.error_flagged} error-flagged, {res.accepted_exact} accepted-and-exact, "
          f"{res.hung} hung, {res.oob_writes} out-of-bounds writes, {res.wrong} wrong results")
    print(f"  edits {summary['by_edit']}; error codes {summary['by_error_code']}")
    if args.waves:
        print(f"  waves: {args.waves}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
