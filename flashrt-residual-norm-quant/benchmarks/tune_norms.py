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

Usage: ``python tune_norms.py --out DIR [--warm] [--functions a,b] [--group model|large|boundary]
[--shapes 512x2048,...] [--candidates rule,...] [--baselines eager,compile,liger,copy]``.
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


def before_config(C, D):
    """The launch rule this sweep replaced: about 8 elements per thread (up to 16 warps),
    short rows grouped into 2048-element tiles, rows past 8192 in 4096-wide chunks."""
    bd = 1 << (D - 1).bit_length()
    if bd > 8192:
        return C(True, 1, 4096, 16)
    br = max(1, 2048 // bd)
    return C(False, br, bd, max(1, min(16, br * bd // 256)))


def candidates(norms, function, D, rows, device):
    """Named RowConfigs for width D: the rule, the rule it replaced and the alternatives
    (elements per thread; on many rows a persistent grid and a chunked row)."""
    C = norms.RowConfig
    flags = cases.FUNCTIONS[function][0]
    rule = norms.row_config(D, rows, device, quant=flags.get("quant", False),
                            residual=flags.get("residual", False),
                            layer_norm=function == "layer_norm_bf16")
    named = {"before": before_config(C, D), "rule": rule}
    bd = norms.next_power_of_2(D)
    if bd > norms.REG_MAX_BLOCK:
        return named
    for e in (8, 16, 32):
        named[f"r1e{e}"] = C(False, 1, bd, max(1, min(16, bd // (32 * e))))
    if rows > 8 * torch.cuda.get_device_properties(device).multi_processor_count:
        w = max(1, min(16, bd // 512))
        named["r1e16p"] = C(False, 1, bd, w, max(1, 32 // w))
        if bd >= 4096:
            named["chunk"] = C(True, 1, bd // 2, max(1, bd // 1024))
    return named


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


def ours_fn(norms, function, cfg):
    eps = 1e-5 if function == "layer_norm_bf16" else 1e-6

    def call(s):
        if function == "layer_norm_bf16":
            norms._launch_layer_norm(s["x"], s["weight"], s["bias"], s["out"], eps, cfg)
        else:
            norms._launch_rms(s["x"], s.get("residual"), s["weight"], s.get("scale"), s["out"],
                              eps, cfg)
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
             baselines, keep=()):
    device = torch.device("cuda")
    fmt = cases.FUNCTIONS[function][1]
    nbytes = bench._nbytes(function, rows, dim)
    sets = make_sets(function, rows, dim, 1 if warm else harness.rotation_sets(nbytes), device)
    calls = 8 if nbytes >= LARGE_BYTES else 64
    eager = eager_fn(reference_of(kernel), function)
    rec = {"function": function, "model": model, "rows": rows, "D": dim, "bytes": nbytes,
           "candidates": {}}
    done = {}  # cfg -> entry: a config named twice (rule = a sweep point) is timed once
    named = candidates(norms, function, dim, rows, device)
    for name, cfg in ((n, c) for n, c in named.items() if not keep or n in keep):
        if cfg in done:
            rec["candidates"][name] = done[cfg]
            continue
        fn = ours_fn(norms, function, cfg)
        v = verify(fn, sets[0], eager, fmt)
        entry = {"cfg": cfg._asdict(), "ok": v.ok}
        if not v.ok:
            entry["note"] = v.message
        elif not warm:
            entry["us"] = harness.graph_us(fn, sets, min_calls=calls)
        rec["candidates"][name] = done[cfg] = entry
    judge = lambda got, want: [compare(fmt, got, want)]  # noqa: E731
    compiled = peer = None
    if "compile" in baselines:
        compiled, rec["compile_status"] = harness.verified_compile(eager, sets, judge)
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
    best = min(timed, key=timed.get)
    gbps = rec["bytes"] / (timed[best] * 1e-6) / 1e9
    fmt = lambda x: f"{x:7.2f}" if x else "    n/a"  # noqa: E731
    return (f"{rec['function'][:22]:22s} {rec['rows']:5d}x{rec['D']:<5d} best {best:11s} "
            f"{timed[best]:7.2f} rule {fmt(timed.get('rule'))} before {fmt(timed.get('before'))} "
            f"compile {fmt(rec['compile_us'])} liger {fmt(rec['liger_us'])} "
            f"copy {fmt(rec['copy_us'])} {100 * gbps / rec['copy_gbps_1gib']:4.0f}%")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--warm", action="store_true")
    ap.add_argument("--functions", default="")
    ap.add_argument("--group", choices=("model", "large", "boundary", "all"), default="all")
    ap.add_argument("--shapes", default="", help="ROWSxD,... to measure (default: all)")
    ap.add_argument("--candidates", default="", help="names to time (default: all)")
    ap.add_argument("--baselines", default="eager,compile,liger,copy")
    args = ap.parse_args()
    kernel = load_built(Package(PKG))
    norms = importlib.import_module(f"{kernel.__name__}.norms")
    peers = bench._liger()
    grid = [(f, s) for f in bench.RMS_FUNCTIONS for s in bench.RMS_SHAPES]
    grid += [("layer_norm_bf16", s) for s in bench.LN_SHAPES]
    grid = [(f, s, "large" if s[0] == "large traffic" else "model") for f, s in grid]
    grid += [(f, s, "boundary") for f in ("rms_norm_bf16", "rms_norm_quant_fp8_static_bf16")
             for s in BOUNDARY_SHAPES]
    wanted = set(filter(None, args.functions.split(",")))
    shapes = set(filter(None, args.shapes.split(",")))
    grid = [(f, s) for f, s, g in grid
            if (not wanted or f in wanted) and args.group in ("all", g)
            and (not shapes or f"{s[1]}x{s[2]}" in shapes)]
    copy_gbps = None if args.warm else harness.copy_bandwidth_gbps()
    env = None if args.warm else harness.environment()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for function, (model, rows, dim) in grid:
        t0 = time.perf_counter()
        rec = tune_row(kernel, norms, function, model, rows, dim, warm=args.warm,
                       copy_gbps=copy_gbps, peers=peers, baselines=args.baselines,
                       keep=set(filter(None, args.candidates.split(","))))
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
