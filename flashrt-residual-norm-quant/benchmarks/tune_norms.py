"""Launch-shape sweep of the row-norm kernels: the record of how ``norms.row_config`` was chosen.

For every function and shape of bench_norms.py (plus the spec's GROOT VL 1024x2048 and
video-prefill 2520x2048, either side of the few-rows boundary), each candidate
``RowConfig`` (elements per thread, persistent grid with next-row prefetch, chunked
two-pass) is verified against reference.py, then timed under CUDA-graph replay over
L2-rotated inputs (harness.graph_us), beside eager, verified torch.compile (with
emulate_precision_casts where plain Inductor does not verify), liger-kernel where its op
matches, and a same-size device copy. ``before`` is the launch rule this sweep replaced
(8 elements per thread, short rows grouped), ``rule`` the current ``norms.row_config``.
An A/B run of the same script also chose the kernels' approximate rsqrt over a correctly
rounded 1/sqrt (H200: 2.68 vs 2.71 us at 512x2048, 73.8 vs 74.1 us at 16384x4096).

LayerNorm variants (``Spec``): the register row with the weight/bias loaded before the
statistics ("early") or after them ("late": not live across the two reductions, fewer
registers a thread), the chunked row unrolled with L2 eviction hints (``chunk``,
``ch<chunk>w<warps>``: torch.compile's looped-reduction form) and as a loop (``loop``,
the form rows of up to 8192 ran chunked before). RMSNorm variants on many rows: the
register row with the weight loaded beside x ("early") or after the reduction ("late",
"late16" at 16 warps). Each record carries the compiled kernel's registers a thread and
spills, and whether a variant's output has the rule's bits. ``--group new`` runs ``NEW_ROWS`` only
(the open targets of the last H200 record, each with its own candidates and
baselines), most important first, so that ``--budget`` cuts the least important.

H200 run of ``--group new`` (2026-12-02, us under graph replay; that run's names: "rule"
= register rows with late weight/bias for many rows, "early" = the same before,
"ev<chunk>w<warps>" = today's unrolled chunked row, "chunk" = today's "loop"):

* LayerNorm 8192x8192: register 8 warps late 69.43 (92% of the 1 GiB copy ceiling),
  16 warps late 79.94, 8 warps early 77.08, chunked loop 4096w8 (the rule before) 82.21,
  unrolled 2048w8 74.04 / 4096w8 74.19 / 2048w16 78.76; compile 68.93, liger 91.96,
  same-size copy 64.37. Adopted: register rows to 8192, late weight/bias (0.99x compile).
* LayerNorm 16384x4096: unrolled 2048w8 72.67, 2048w16 92.16; register late 8 warps
  75.46, 16 warps 85.60, 4 warps 76.81; register early 8 warps (the rule before) 77.06;
  chunked loop 2048w4 81.92; compile 81.09, liger 71.16. Adopted: unrolled 2048w8.
* LayerNorm 512x1152 (one wave): 4 warps 2.96, 8 warps (the rule before) 3.07, 2 warps
  3.04, 16 warps 3.39, 8 warps late 3.16; compile 3.45, liger 3.11. Adopted: 16 elements
  per thread for few LayerNorm rows, weight/bias early below 8192 wide.
* LayerNorm 1024x8192 (one wave): 16 warps late 13.37, early 14.20, chunked loop 4096w8
  (the rule before) 14.44; liger 14.37. Adopted: late from 8192 wide.
* 10x1024 (rule 4 warps / 8 / 2 / 1 warp): RMSNorm 1.38 / 1.37 / 1.42 / 1.45, compile
  1.39, liger 1.42; add + RMSNorm 1.47 / 1.44 / 1.64 / 1.92, compile 1.42, liger 1.54;
  FP8 add + RMSNorm 1.49 / 1.55 / 1.65 / 1.92, compile 1.50. add + RMSNorm (rule 8 warps
  / 16 / 4 / 2): 41x1536 1.68 / 1.68 / 1.84 / 2.18, liger 1.67; 512x2048 4.00 / 4.02 /
  4.36 / 5.30, liger 3.84; 560x2048 4.11 / 5.08 / 4.53 / 5.48, liger 3.97. No candidate
  beat the rule by more than 0.03 us (or did so for one function and lost on another):
  the RMSNorm rule stays.

Second H200 run of ``--group new`` (2026-12-02, the large RMSNorm-family rows; 1 GiB copy
4212 GB/s; us under graph replay, (registers a thread); that run's names: "rule" = the
rule before it (weight beside x everywhere), "ch<chunk>w<warps>" = the chunked RMSNorm
row unrolled with L2 eviction hints, a form since removed; slower absolute numbers than
the run above on the same kernels (RMSNorm 8192x8192 74.06 here): compare within a run):

* FP8 add + RMSNorm 8192x8192: rule 118.92 (102), late 116.12 (73), ch2048w8 119.73;
  compile (emulate_precision_casts) 114.50. Adopted: the weight after the reduction there
  (``rms_late_weight``; 2 -> 3 rows per SM).
* FP8 add + RMSNorm 16384x4096: rule 113.35 (61), late 115.70 (40), ch2048w8 116.92;
  compile 112.10.
* add + RMSNorm 8192x8192: rule 133.96 (79), late 134.47 (63), ch2048w8 135.60, ch4096w8
  137.18; compile 130.96, same-size copy 127.50.
* add + RMSNorm 16384x4096: rule 131.14 (48), late 130.68 (40), r1e32 132.32, ch1024w4
  134.22, ch2048w8 133.78; compile 126.75.
* RMSNorm 8192x8192: rule 74.06 (64), late 74.76, persistent r1e16p 79.73, ch2048w8
  74.81, ch4096w8 75.11; compile 72.83, same-size copy 64.44.
* LayerNorm 8192x8192: rule 75.44, unrolled ch2048w8 73.95; compile 72.92 (the run above
  ordered the two the other way, 69.43 vs 74.04: the rule stays).

torch.compile's kernels there (Inductor's generated code, kept by that run): one looped
reduction per op that reads each row twice (evict_last, then again from L2 with
evict_first) and issues every store in the second loop. Neither that form (the ch rows)
nor fewer registers a thread closed the 1-3% to compile on the bf16 and 4096-wide rows.

Usage: ``python tune_norms.py --out DIR [--warm] [--functions a,b]
[--group model|large|boundary|new] [--shapes 512x2048,...] [--candidates rule,...]
[--baselines eager,compile,liger,copy] [--budget SECONDS]``.
``--warm`` only compiles (Triton, Inductor, liger) on one input set and times nothing (fills the
on-disk caches; never run several at once: each one rebuilds the package).
Writes DIR/tune_norms.json (one record per row, rewritten after every row).
"""

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench import harness  # noqa: E402
from flashrt_tools.repo import ROOT, Package, load_file  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built, reference_of  # noqa: E402

PKG = "flashrt-residual-norm-quant"
bench = load_file(ROOT / PKG / "benchmarks" / "bench_norms.py", "_flashrt_tune_bench_norms")
cases = bench.cases
LARGE_BYTES = 64 << 20  # at and above: fewer graph calls (each call is >= 30 us)
# the spec's GROOT VL and video-prefill shapes, either side of the few-rows boundary
BOUNDARY_SHAPES = [("GROOT VL", 1024, 2048), ("video prefill", 2520, 2048)]
# compiled with emulate_precision_casts only: plain Inductor does not verify
EMULATED_COMPILE = ("residual_add_rms_norm_quant_fp8_static_bf16",)
# --group new: the open targets of the last H200 record, most important first
# (function, model, rows, D, candidates, baselines)
NEW_ROWS = [
    ("residual_add_rms_norm_bf16", "large traffic", 8192, 8192, "rule,early,late",
     "compile,copy"),
    ("residual_add_rms_norm_bf16", "large traffic", 16384, 4096, "rule,late,r1e32",
     "compile,copy"),
    ("rms_norm_bf16", "large traffic", 8192, 8192, "rule,late,r1e16p", "compile,copy"),
    ("residual_add_rms_norm_quant_fp8_static_bf16", "large traffic", 8192, 8192,
     "rule,early,late16", "compile,copy"),
    ("residual_add_rms_norm_quant_fp8_static_bf16", "large traffic", 16384, 4096,
     "rule,late", "compile,copy"),
    ("layer_norm_bf16", "large traffic", 8192, 8192, "rule,ch2048w8", "compile,copy"),
]


def before_config(C, D):
    """The launch rule this sweep replaced: about 8 elements per thread (up to 16 warps),
    short rows grouped into 2048-element tiles, rows past 8192 in 4096-wide chunks."""
    bd = 1 << (D - 1).bit_length()
    if bd > 8192:
        return C(True, 1, 4096, 16)
    br = max(1, 2048 // bd)
    return C(False, br, bd, max(1, min(16, br * bd // 256)))


class Spec(NamedTuple):
    """One timed variant: ``kind`` "package" (the package launch under ``cfg``; ``late``
    None = the rule's placement of the weight (LayerNorm: and bias) load, before or after
    the reduction of a register row, else forced) or "loop" (the package's chunked
    LayerNorm in its loop form at any width: what rows of up to 8192 ran chunked before
    the unrolled form)."""
    kind: str
    cfg: tuple
    late: Optional[bool] = None

    def record(self):
        return {"kind": self.kind, "cfg": self.cfg._asdict(), "late": self.late}


def candidates(norms, function, D, rows, device):
    """Named variants for width D: the rule, the rule it replaced and the alternatives
    (elements per thread; on many rows a persistent grid; a chunked row; LayerNorm: the
    weight/bias load before or after the statistics, chunk shapes, the chunk loop)."""
    C = norms.RowConfig
    flags = cases.FUNCTIONS[function][0]
    layer_norm = function == "layer_norm_bf16"
    rule = norms.row_config(D, rows, device, quant=flags.get("quant", False),
                            residual=flags.get("residual", False), layer_norm=layer_norm)
    named = {"before": before_config(C, D), "rule": rule}
    bd = norms.next_power_of_2(D)
    if bd > norms.REG_MAX_BLOCK:
        return {k: Spec("package", c) for k, c in named.items()}
    few = rows <= 8 * torch.cuda.get_device_properties(device).multi_processor_count
    for e in (4, 8, 16, 32) if few else (8, 16, 32):
        named[f"r1e{e}"] = C(False, 1, bd, max(1, min(16, bd // (32 * e))))
    if not few:
        w = max(1, min(16, bd // 512))
        named["r1e16p"] = C(False, 1, bd, w, max(1, 32 // w))
    if bd >= 4096:
        named["chunk"] = C(True, 1, bd // 2, max(1, bd // 1024))
    specs = {k: Spec("package", c) for k, c in named.items()}
    if not layer_norm and not few:
        # the register row with the weight loaded beside x or after the reduction
        reg = C(False, 1, bd, max(1, min(8, bd // 512)))
        specs["early"], specs["late"] = Spec("package", reg, False), Spec("package", reg, True)
        specs["late16"] = Spec("package", C(False, 1, bd, max(1, min(16, bd // 512))), True)
    if layer_norm:
        # the register row with either weight/bias placement; the chunked row unrolled
        # (package) and as a loop
        reg = C(False, 1, bd, max(1, min(16 if few else 8, bd // 512)))
        specs["early"], specs["late"] = Spec("package", reg, False), Spec("package", reg, True)
        for chunk, warps in ((2048, 16), (2048, 8), (4096, 8)):
            if chunk < bd:
                specs[f"ch{chunk}w{warps}"] = Spec("package", C(True, 1, chunk, warps))
        if "chunk" in named:
            specs["loop"] = Spec("loop", named["chunk"])
    return specs


def make_sets(function, rows, dim, n, device):
    flags, fmt = cases.FUNCTIONS[function]
    out_dtype = torch.float8_e4m3fn if fmt == "fp8" else torch.bfloat16
    sets = []
    for i in range(n):
        kw = cases.norm_inputs(rows, dim, device, torch.Generator().manual_seed(i), **flags)
        s = dict(kw, out=torch.empty(rows, dim, dtype=out_dtype, device=device))
        if "residual" in kw:
            s["residual0"] = kw["residual"].clone()
            s["residual_sink"] = torch.empty_like(kw["residual"])
        sets.append(s)
    return sets


def ours_fn(norms, function, spec, launched=None):
    """One call of the variant; ``launched["kernel"]``: the compiled kernel it launched
    (its register and spill counts go into the record)."""
    eps = 1e-5 if function == "layer_norm_bf16" else 1e-6
    cfg = spec.cfg
    launched = {} if launched is None else launched

    def call(s):
        if spec.kind == "loop":
            x = s["x"]
            launched["kernel"] = norms._layer_norm_kernel[(x.shape[0],)](
                x, s["weight"], s["bias"], s["out"], x.shape[0], x.shape[1], eps, CHUNKED=True,
                PERSISTENT=False, LATE_AFFINE=False, N_CHUNKS=0, BLOCK_R=1,
                BLOCK_D=cfg.block_d, num_warps=cfg.num_warps, enable_fp_fusion=False)
        elif function == "layer_norm_bf16":
            launched["kernel"] = norms._launch_layer_norm(
                s["x"], s["weight"], s["bias"], s["out"], eps, cfg, late_affine=spec.late)
        else:
            launched["kernel"] = norms._launch_rms(s["x"], s.get("residual"), s["weight"],
                                                   s.get("scale"), s["out"], eps, cfg,
                                                   late_w=spec.late)
        return s["out"]
    return call


def eager_fn(reference, function):
    def eager(s):
        names = [n for n in ("residual", "x", "weight", "bias", "scale") if n in s]
        args = [s["residual0" if n == "residual" else n] for n in names]
        if "residual" not in s:
            return getattr(reference, function)(*args)
        out, rounded = getattr(reference, function + "_with_residual")(*args)
        s["residual_sink"].copy_(rounded)  # the same traffic as ours
        return out
    return eager


def verify(fn, s, eager, fmt):
    """Output (and the in-place residual) against the reference on a fresh residual."""
    if "residual" in s:
        s["residual"].copy_(s["residual0"])
    v = compare(fmt, fn(s), eager(s))
    if v.ok and "residual" in s:
        v = compare("exact", s["residual"], s["residual_sink"])
    return v


def tune_row(kernel, norms, function, model, rows, dim, *, warm, copy_gbps, peers,
             baselines, keep=(), over_budget=lambda: False):
    device = torch.device("cuda")
    fmt = cases.FUNCTIONS[function][1]
    nbytes = bench._nbytes(function, rows, dim)
    sets = make_sets(function, rows, dim, 1 if warm else harness.rotation_sets(nbytes), device)
    calls = 8 if nbytes >= LARGE_BYTES else 64
    eager = eager_fn(reference_of(kernel), function)
    rec = {"function": function, "model": model, "rows": rows, "D": dim, "bytes": nbytes,
           "candidates": {}}
    done = {}  # spec -> entry: a variant named twice (rule = a sweep point) is timed once
    named = candidates(norms, function, dim, rows, device)
    rule_out = None
    for name, spec in ((n, c) for n, c in named.items() if not keep or n in keep):
        if spec in done:
            rec["candidates"][name] = done[spec]
            continue
        launched = {}
        fn = ours_fn(norms, function, spec, launched)
        v = verify(fn, sets[0], eager, fmt)
        entry = dict(spec.record(), ok=v.ok, **harness.kernel_resources(launched.get("kernel")))
        if name == "rule":
            rule_out = sets[0]["out"].clone()
        elif rule_out is not None:
            entry["bits_equal_rule"] = harness.same_bits(sets[0]["out"], rule_out)
        if not v.ok:
            entry["note"] = v.message
        elif not warm:
            entry["us"] = harness.graph_us(fn, sets, min_calls=calls)
        rec["candidates"][name] = done[spec] = entry
    judge = lambda got, want: [compare(fmt, got, want)]  # noqa: E731
    compiled = peer = None
    if "compile" in baselines and over_budget():
        rec["compile_status"] = "skipped: over the run's time budget"
    elif "compile" in baselines:
        # plain Inductor drops the residual's bf16 rounding there (BENCHMARKING.md)
        modes = (True,) if function in EMULATED_COMPILE else (False, True)
        compiled, rec["compile_status"] = harness.verified_compile(eager, sets, judge,
                                                                   emulate_modes=modes)
    if "liger" in baselines:
        peer = bench._peer(peers, function, sets)
        if peer is not None and not compare(fmt, peer(sets[0]), eager(sets[0])).ok:
            rec["liger_status"], peer = "output differs", None
    if warm:
        return rec
    time_it = lambda fn: harness.graph_us(fn, sets, min_calls=calls) if fn else None  # noqa: E731
    rec["eager_us"] = time_it(eager if "eager" in baselines else None)
    rec["compile_us"] = time_it(compiled)
    rec["liger_us"] = time_it(peer)
    rec["copy_us"] = harness.same_size_copy_us(nbytes, len(sets)) if "copy" in baselines else None
    rec["copy_gbps_1gib"] = copy_gbps
    return rec


def summary(rec):
    c = rec["candidates"]
    timed = {k: v["us"] for k, v in c.items() if "us" in v}
    if not timed:
        return f"{rec['function'][:22]:22s} {rec['rows']:5d}x{rec['D']:<5d} nothing verified"
    best = min(timed, key=timed.get)
    gbps = rec["bytes"] / (timed[best] * 1e-6) / 1e9
    fmt = lambda x: f"{x:7.2f}" if x else "    n/a"  # noqa: E731
    others = " ".join(f"{k} {v:.2f} ({c[k].get('regs', '?')} regs)" for k, v in timed.items())
    return (f"{rec['function'][:22]:22s} {rec['rows']:5d}x{rec['D']:<5d} best {best:11s} "
            f"{timed[best]:7.2f} rule {fmt(timed.get('rule'))} before {fmt(timed.get('before'))} "
            f"compile {fmt(rec['compile_us'])} liger {fmt(rec['liger_us'])} "
            f"copy {fmt(rec['copy_us'])} {100 * gbps / rec['copy_gbps_1gib']:4.0f}% | {others}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--warm", action="store_true")
    ap.add_argument("--functions", default="")
    ap.add_argument("--group", choices=("model", "large", "boundary", "new", "all"),
                    default="all", help="new: NEW_ROWS only, each with its own candidates "
                    "and baselines")
    ap.add_argument("--shapes", default="", help="ROWSxD,... to measure (default: all)")
    ap.add_argument("--candidates", default="", help="names to time (default: all)")
    ap.add_argument("--baselines", default="eager,compile,liger,copy")
    ap.add_argument("--budget", type=float, default=0.0,
                    help="seconds: no row and no compile baseline starts within 5 s of it "
                    "(0: no limit)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    elapsed = lambda: time.perf_counter() - t_start  # noqa: E731
    kernel = load_built(Package(PKG))
    norms = importlib.import_module(f"{kernel.__name__}.norms")
    peers = bench._liger()
    keep = set(filter(None, args.candidates.split(",")))
    if args.group == "new":
        grid = [(f, (m, r, d), c, b) for f, m, r, d, c, b in NEW_ROWS]
    else:
        grid = [(f, s) for f in bench.RMS_FUNCTIONS for s in bench.RMS_SHAPES]
        grid += [("layer_norm_bf16", s) for s in bench.LN_SHAPES]
        grid = [(f, s, "large" if s[0] == "large traffic" else "model") for f, s in grid]
        grid += [(f, s, "boundary") for f in ("rms_norm_bf16", "rms_norm_quant_fp8_static_bf16")
                 for s in BOUNDARY_SHAPES]
        grid = [(f, s, ",".join(keep), args.baselines) for f, s, g in grid
                if args.group in ("all", g)]
    wanted = set(filter(None, args.functions.split(",")))
    shapes = set(filter(None, args.shapes.split(",")))
    grid = [row for row in grid if (not wanted or row[0] in wanted)
            and (not shapes or f"{row[1][1]}x{row[1][2]}" in shapes)]
    copy_gbps = None if args.warm else harness.copy_bandwidth_gbps()
    env = None if args.warm else harness.environment()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    over_budget = lambda: bool(args.budget) and elapsed() > args.budget - 5  # noqa: E731
    for function, (model, rows, dim), names, baselines in grid:
        if over_budget():
            print(f"skipped (time budget) {function} {rows}x{dim}", flush=True)
            records.append({"function": function, "rows": rows, "D": dim,
                            "skipped": "over the run's time budget"})
            continue
        t0 = time.perf_counter()
        rec = tune_row(kernel, norms, function, model, rows, dim, warm=args.warm,
                       copy_gbps=copy_gbps, peers=peers, baselines=baselines,
                       keep=set(filter(None, names.split(","))),
                       over_budget=over_budget)
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        records.append(rec)
        bad = [k for k, v in rec["candidates"].items() if not v["ok"]]
        if bad:
            print(f"VERIFY FAIL {function} {rows}x{dim}: {bad}", flush=True)
        if not args.warm:
            print(summary(rec), flush=True)
            (out / "tune_norms.json").write_text(json.dumps(
                {"environment": env, "records": records}, indent=1) + "\n")
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
