"""Launch-shape sweep of the ada-norm kernel: the record of how ``ada_norms.row_config`` was chosen.

For both functions, every shape of bench_ada_norms.py and both style layouts (rows x 3D,
broadcast 1 x 3D), each candidate ``RowConfig`` (elements per thread, persistent grid with
next-row prefetch and the broadcast style row loaded once per program, chunked two-pass)
is verified against reference.py, then timed under CUDA-graph replay over L2-rotated
inputs (harness.graph_us), beside eager, verified torch.compile (with
emulate_precision_casts where plain Inductor does not verify) and a same-size device copy
(no PyPI peer implements this modulated norm). ``rule`` is the current
``ada_norms.row_config``. ``--before DIR``: a directory holding an earlier ``ada_norms.py``
(with its ``_helpers.py``, ``_host.py`` and an ``_ops.py``), timed with its own launch
rule as the ``before`` column. An A/B run of the same script also chose the kernel's
approximate rsqrt over a correctly rounded 1/sqrt (H200: 24.2 vs 25.1 us at 2520x3072,
1.61 vs 1.84 us for the 10-row FP8 call).

``--group new`` runs ``NEW_ROWS`` only (the open targets of the last H200 record, each
with its own candidates: now the broadcast norm at 16384x4096, with persistent grids
prefetching two tiles ahead, ``_ada_norm_kernel``'s PREFETCH = 2). H200, 2026-12-04 (us,
(registers a thread)): r1e16L 102.29 (44), r1e8p2d2 107.52 (64), the rule (persistent,
prefetch 1) 109.32 (99), r1e16L's neighbours r1e8L 110.28 (32) / r1e32L 113.65 (69),
prefetch two ahead at 16 elements 110.57 (111); same-size copy 95.85, the ``traffic``
kernel (the same 1 read : 2 write bytes, no math) 100.03: two tiles in flight did not
help, loading the style after the reduction did. Then both functions with a broadcast
style at the Wan rows and 16384x4096 (``--styles 1 --shapes 2520x3072,4096x3072,16384x4096
--candidates rule,r1e16L,r1e8L,r1e32L``): the norm r1e16L 14.46 / 22.44 / 103.50 against
the rule's 14.76 / 23.84 / 110.95 (r1e8L 101.22 at 16384 rows, 110.28 in the run
before: r1e16L is the steadier); the fused op the rule 23.15 / 36.35 / 192.85, r1e16L
25.17 / 38.20 / 181.92. Adopted: r1e16L for many 4096-wide rows with a broadcast style,
the fused op from ``LATE_FUSED_ROWS`` (16384) rows (``late_style_loads``). The
2026-12-02 run (2026-12-02, 8192x8192, 1 GiB copy 4212 GB/s; us
under graph replay, (registers a thread); that run's "rule" = the rule before it: 32
elements per thread per-row, the persistent grid at 16 for a broadcast style, every load
before the reduction; "L" = weight, scale and shift loaded after it):

* fused, per-row style: r1e16L 264.33 (58), r1e32L 265.58 (104), r1e16 266.60 (94), rule
  294.84 (167); compile 277.96.
* norm, broadcast style: r1e16L 108.34 (51), persistent 1 program per SM 112.64 (99),
  rule 113.66 (99), r1e32L 113.86 (76); compile 107.92, same-size copy 96.10.
* norm, per-row style: rule 187.14 (122), r1e16L 187.25 (50), r1e32L 187.57 (75);
  compile 191.32.
* fused, broadcast style: r1e32L 187.59 (96), persistent 1 program per SM 192.95 (128),
  rule 194.40 (128); compile 201.64.

Adopted: many 8192-wide rows (either style, either function) run r1e16L
(``late_style_loads``); the fused op with a broadcast style was not timed at r1e16L.
Late loads give the bits of the same launch with early loads (other warp counts sum in
another order, within the tolerances).

Usage: ``python tune_ada_norms.py --out DIR [--warm] [--functions a,b]
[--group model|large|new] [--styles rows,1] [--shapes 10x1024,...] [--candidates rule,...]
[--before DIR] [--baselines eager,compile,copy,traffic] [--budget SECONDS]``. ``traffic``
(non-fused rows): ``_traffic_kernel`` moving the same bytes with no math, the ceiling of
this read / write mix beside the 1 : 1 same-size copy.
``--warm`` only compiles (Triton, Inductor) on one input set and times nothing (fills the
on-disk caches; never run several at once: each one rebuilds the package).
Writes DIR/tune_ada_norms.json (one record per row, rewritten after every row).
"""

import argparse
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench import harness  # noqa: E402
from flashrt_tools.repo import ROOT, Package, load_file  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built, reference_of  # noqa: E402

PKG = "flashrt-adaptive-norms"
bench = load_file(ROOT / PKG / "benchmarks" / "bench_ada_norms.py", "_flashrt_tune_bench_ada")
cases = bench.cases
LARGE_BYTES = 64 << 20  # at and above: fewer graph calls (each call is >= 30 us)
# --group new: the open targets of the last H200 record, most important first
# (function, rows, D, broadcast, candidates). 2026-12-03: the broadcast norm at 16384x4096,
# 88% of copy BW on the rule (2 persistent programs per SM, 99 registers a thread offline:
# one tile's reads in flight per program); candidates with two tiles in flight ("d2", 111
# registers: still 2 programs per SM), other grids and elements per thread, and late loads.
NEW_ROWS = [
    ("ada_rms_norm_style_bf16", 16384, 4096, True,
     "rule,r1e16p2d2,r1e16p1d2,r1e16p3,r1e8p2,r1e8p2d2,r1e8p3,r1e8p3d2,r1e16L,r1e8L,r1e32L"),
]


def candidates(ada, D, rows, broadcast, device, fused):
    """Named (RowConfig, late style loads, prefetch depth) for width D: the rule (None:
    its own placement) and the alternatives (elements per thread, weight and style loaded
    beside x; on many rows persistent grids prefetching one tile ahead ("p<programs per
    SM>") or two ("...d2"), register rows loading weight, scale and shift after the
    reduction ("L"), a chunked row)."""
    C = ada.RowConfig
    named = {"rule": (ada.row_config(D, rows, device, broadcast, fused), None, 1)}
    bd = ada.next_power_of_2(D)
    if bd > ada.REG_MAX_BLOCK:
        return named
    for e in (8, 16, 32):
        named[f"r1e{e}"] = (C(False, 1, bd, max(1, min(16, bd // (32 * e)))), False, 1)
    if rows > 8 * torch.cuda.get_device_properties(device).multi_processor_count:
        for e in (8, 16, 32):
            warps = max(1, min(16, bd // (32 * e)))
            for p in (1, 2, 3):
                named[f"r1e{e}p{p}"] = (C(False, 1, bd, warps, p), False, 1)
                named[f"r1e{e}p{p}d2"] = (C(False, 1, bd, warps, p), False, 2)
            # weight, scale and shift loaded after the reduction
            named[f"r1e{e}L"] = (C(False, 1, bd, warps), True, 1)
        if bd == 8192:
            named["chunk"] = (C(True, 1, 4096, 8), False, 1)
    return named


@triton.jit
def _traffic_kernel(src_ptr, row_ptr, dst_ptr, n_rows, D, N_IN: tl.constexpr,
                    BLOCK_D: tl.constexpr):
    """The bytes of the ada norm with no math: each program reads one row of each of
    N_IN (rows, D) planes of ``src`` and stores their sum, then copies one broadcast row
    (the gate chunk of a 1 x 3D style) to a second (rows, D) plane of ``dst``."""
    i = tl.program_id(0).to(tl.int64)
    o = tl.arange(0, BLOCK_D)
    m = o < D
    acc = tl.load(src_ptr + i * D + o, mask=m, other=0.0)
    for k in tl.static_range(1, N_IN):
        acc += tl.load(src_ptr + (k * n_rows + i) * D + o, mask=m, other=0.0)
    g = tl.load(row_ptr + o, mask=m, other=0.0)
    tl.store(dst_ptr + i * D + o, acc, mask=m)
    tl.store(dst_ptr + (n_rows + i) * D + o, g, mask=m)


def traffic_us(rows, dim, broadcast, n_sets):
    """Graph-replay time of ``_traffic_kernel`` moving the non-fused ada norm's bytes (x,
    and the three style chunks when per row, read; out and gate_out written), the best of
    4 / 8 / 16 warps: how fast this read / write mix can go at all, beside the same-size
    copy (1 read : 1 write; the broadcast norm is 1 : 2)."""
    n_in = 1 if broadcast else 4
    bd = triton.next_power_of_2(dim)
    sets = [(torch.randn(n_in, rows, dim, device="cuda").bfloat16(),
             torch.randn(dim, device="cuda").bfloat16(),
             torch.empty(2, rows, dim, device="cuda", dtype=torch.bfloat16)) for _ in range(n_sets)]
    best = None
    for warps in (4, 8, 16):
        us = harness.graph_us(lambda s, w=warps: _traffic_kernel[(rows,)](
            s[0], s[1], s[2], rows, dim, N_IN=n_in, BLOCK_D=bd, num_warps=w), sets, min_calls=8)
        best = us if best is None else min(best, us)
    return best


def make_sets(fused, rows, dim, broadcast, n, device):
    sets = []
    for i in range(n):
        kw = cases.ada_inputs(rows, dim, device, torch.Generator().manual_seed(i),
                              broadcast=broadcast, fused=fused)
        s = dict(kw, out=torch.empty(rows, dim, device=device,
                                     dtype=torch.float8_e4m3fn if fused else torch.bfloat16),
                 gate_out=torch.empty(rows, dim, dtype=torch.bfloat16, device=device))
        if fused:
            s["residual0"] = kw["residual"].clone()
        sets.append(s)
    return sets


def ours_fn(module, fused, cfg=None, late=None, launched=None, prefetch=1):
    """One call of a module's ``_launch`` (cfg None: that module's own rule; ``late``: the
    style-load placement, None = the rule's; ``prefetch``: a persistent grid's depth).
    ``launched["kernel"]``: the compiled kernel it launched (its register and spill
    counts go into the record)."""
    extra = () if cfg is None else (cfg,) if late is None else (cfg, late)
    depth = {} if prefetch == 1 else {"prefetch": prefetch}  # a --before module has no depth
    launched = {} if launched is None else launched

    def call(s):
        launched["kernel"] = module._launch(s.get("residual"), s["x"], s.get("gate"),
                                            s["weight"], s["style"], s.get("scale"), s["out"],
                                            s["gate_out"], 1e-6, *extra, **depth)
        return (s["residual"], s["out"], s["gate_out"]) if fused else (s["out"], s["gate_out"])
    return call


def eager_fn(reference, function, fused):
    names = list(cases.ada_inputs(1, 2, "cpu", torch.Generator(), fused=fused))

    def eager(s):
        return getattr(reference, function)(*(s["residual0" if n == "residual" else n]
                                              for n in names))
    return eager


def judge(formats):
    return lambda got, want: [compare(f, g, w) for f, g, w in zip(formats, got, want)]


def verify(fn, s, eager, formats):
    if "residual" in s:
        s["residual"].copy_(s["residual0"])
    bad = [v.message for v in judge(formats)(fn(s), eager(s)) if not v.ok]
    return "; ".join(bad)


def load_before(path):
    """An earlier ada_norms.py (and the helpers beside it) as a package, for ``before``."""
    spec = importlib.util.spec_from_file_location(
        "_ada_before", Path(path) / "__init__.py", submodule_search_locations=[str(path)])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["_ada_before"] = pkg
    return importlib.import_module("_ada_before.ada_norms")


def tune_row(kernel, ada, before, function, model, rows, dim, broadcast, *, warm, copy_gbps,
             baselines, keep=(), over_budget=lambda: False):
    device = torch.device("cuda")
    flags, formats = cases.FUNCTIONS[function]
    fused = flags.get("fused", False)
    nbytes = bench._nbytes(fused, rows, dim, broadcast)
    n_sets = 1 if warm else harness.rotation_sets(nbytes)
    sets = make_sets(fused, rows, dim, broadcast, n_sets, device)
    calls = 8 if nbytes >= LARGE_BYTES else 64
    eager = eager_fn(reference_of(kernel), function, fused)
    rec = {"function": function, "model": model, "rows": rows, "D": dim,
           "style": "1x3D" if broadcast else "rowsx3D", "bytes": nbytes, "candidates": {}}
    named = [(n, ada, c, late, pf)
             for n, (c, late, pf) in candidates(ada, dim, rows, broadcast, device, fused).items()]
    if before is not None:
        named.append(("before", before, None, None, 1))
    named = [c for c in named if not keep or c[0] in keep]
    done = {}  # a config named twice (rule = a sweep point) is timed once
    rule_out = None
    for name, module, cfg, late, prefetch in named:
        key = (module.__name__, cfg, late, prefetch)
        if key in done:
            rec["candidates"][name] = done[key]
            continue
        launched = {}
        fn = ours_fn(module, fused, cfg, late, launched, prefetch)
        bad = verify(fn, sets[0], eager, formats)
        entry = {"cfg": cfg._asdict() if cfg else None, "late": late, "prefetch": prefetch,
                 "ok": not bad,
                 **harness.kernel_resources(launched.get("kernel"))}
        outs = [sets[0][k] for k in ("residual", "out", "gate_out") if k in sets[0]]
        if name == "rule":
            rule_out = [t.clone() for t in outs]
        elif rule_out is not None:
            entry["bits_equal_rule"] = all(map(harness.same_bits, outs, rule_out))
        if bad:
            entry["note"] = bad
        elif not warm:
            entry["us"] = harness.graph_us(fn, sets, min_calls=calls)
        rec["candidates"][name] = done[key] = entry
    compiled = None
    if "compile" in baselines and over_budget():
        rec["compile_status"] = "skipped: over the run's time budget"
    elif "compile" in baselines:
        compiled, rec["compile_status"] = harness.verified_compile(eager, sets, judge(formats))
    if warm:
        return rec
    time_it = lambda fn: harness.graph_us(fn, sets, min_calls=calls) if fn else None  # noqa: E731
    rec["eager_us"] = time_it(eager if "eager" in baselines else None)
    rec["compile_us"] = time_it(compiled)
    rec["copy_us"] = harness.same_size_copy_us(nbytes, len(sets)) if "copy" in baselines else None
    rec["traffic_us"] = (traffic_us(rows, dim, broadcast, len(sets))
                         if "traffic" in baselines and not fused else None)
    rec["copy_gbps_1gib"] = copy_gbps
    return rec


def summary(rec):
    timed = {k: v["us"] for k, v in rec["candidates"].items() if "us" in v}
    best = min(timed, key=timed.get)
    gbps = rec["bytes"] / (timed[best] * 1e-6) / 1e9
    fmt = lambda x: f"{x:7.2f}" if x else "    n/a"  # noqa: E731
    name = "gate_res_fp8" if "gate" in rec["function"] else "ada_rms_norm"
    others = " ".join(f"{k} {v:.2f} ({rec['candidates'][k].get('regs', '?')} regs)"
                      for k, v in timed.items())
    return (f"{name:12s} {rec['rows']:5d}x{rec['D']:<5d} {rec['style']:7s} best {best:11s} "
            f"{timed[best]:7.2f} rule {fmt(timed.get('rule'))} before {fmt(timed.get('before'))} "
            f"compile {fmt(rec['compile_us'])} copy {fmt(rec['copy_us'])} "
            f"traffic {fmt(rec.get('traffic_us'))} "
            f"{100 * gbps / rec['copy_gbps_1gib']:4.0f}% | {others}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--warm", action="store_true")
    ap.add_argument("--functions", default="")
    ap.add_argument("--styles", default="rows,1")
    ap.add_argument("--group", choices=("model", "large", "new", "all"), default="all",
                    help="new: NEW_ROWS only, each with its own candidates")
    ap.add_argument("--before", default=None)
    ap.add_argument("--shapes", default="", help="ROWSxD,... to measure (default: all)")
    ap.add_argument("--candidates", default="", help="names to time (default: all)")
    ap.add_argument("--baselines", default="eager,compile,copy,traffic")
    ap.add_argument("--budget", type=float, default=0.0,
                    help="seconds: no row and no compile baseline starts within 5 s of it "
                    "(0: no limit)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    over_budget = lambda: (bool(args.budget)  # noqa: E731
                           and time.perf_counter() - t_start > args.budget - 5)
    kernel = load_built(Package(PKG))
    ada = importlib.import_module(f"{kernel.__name__}.ada_norms")
    before = load_before(args.before) if args.before else None
    wanted = set(filter(None, args.functions.split(",")))
    styles = [s == "1" for s in args.styles.split(",")]
    shapes = set(filter(None, args.shapes.split(",")))
    keep = args.candidates
    if args.group == "new":
        grid = [(f, ("large traffic", r, d), b, c) for f, r, d, b, c in NEW_ROWS]
    else:
        grid = [(f, s, b, keep) for f in cases.FUNCTIONS for s in bench.SHAPES for b in styles
                if args.group == "all" or (s[0] == "large traffic") == (args.group == "large")]
    grid = [row for row in grid if (not wanted or row[0] in wanted) and row[2] in styles
            and (not shapes or f"{row[1][1]}x{row[1][2]}" in shapes)]
    copy_gbps = None if args.warm else harness.copy_bandwidth_gbps()
    env = None if args.warm else harness.environment()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for function, (model, rows, dim), broadcast, names in grid:
        if over_budget():
            print(f"skipped (time budget) {function} {rows}x{dim}", flush=True)
            records.append({"function": function, "rows": rows, "D": dim,
                            "style": "1x3D" if broadcast else "rowsx3D",
                            "skipped": "over the run's time budget"})
            continue
        t0 = time.perf_counter()
        rec = tune_row(kernel, ada, before, function, model, rows, dim, broadcast,
                       warm=args.warm, copy_gbps=copy_gbps, baselines=args.baselines,
                       keep=set(filter(None, names.split(","))), over_budget=over_budget)
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        records.append(rec)
        bad = [k for k, v in rec["candidates"].items() if not v["ok"]]
        if bad:
            print(f"VERIFY FAIL {function} {rows}x{dim} {rec['style']}: {bad}", flush=True)
        if not args.warm:
            print(summary(rec), flush=True)
            (out / "tune_ada_norms.json").write_text(json.dumps(
                {"environment": env, "records": records}, indent=1) + "\n")
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
