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

Usage: ``python tune_ada_norms.py --out DIR [--warm] [--functions a,b] [--group model|large]
[--styles rows,1] [--shapes 10x1024,...] [--candidates rule,...] [--before DIR]
[--baselines eager,compile,copy]``.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench import harness  # noqa: E402
from flashrt_tools.repo import ROOT, Package, load_file  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built, reference_of  # noqa: E402

PKG = "flashrt-adaptive-norms"
bench = load_file(ROOT / PKG / "benchmarks" / "bench_ada_norms.py", "_flashrt_tune_bench_ada")
cases = bench.cases
LARGE_BYTES = 64 << 20  # at and above: fewer graph calls (each call is >= 30 us)


def candidates(ada, D, rows, broadcast, device):
    """Named RowConfigs for width D: the rule and the alternatives (elements per thread;
    on many rows persistent grids and a chunked row)."""
    C = ada.RowConfig
    named = {"rule": ada.row_config(D, rows, device, broadcast)}
    bd = ada.next_power_of_2(D)
    if bd > ada.REG_MAX_BLOCK:
        return named
    for e in (8, 16, 32):
        named[f"r1e{e}"] = C(False, 1, bd, max(1, min(16, bd // (32 * e))))
    if rows > 8 * torch.cuda.get_device_properties(device).multi_processor_count:
        for e in (16, 32):
            named[f"r1e{e}p2"] = C(False, 1, bd, max(1, min(16, bd // (32 * e))), 2)
        if bd == 8192:
            named["chunk"] = C(True, 1, 4096, 8)
    return named


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


def ours_fn(module, fused, cfg=None):
    """One call of a module's ``_launch`` (cfg None: that module's own rule)."""
    extra = () if cfg is None else (cfg,)

    def call(s):
        module._launch(s.get("residual"), s["x"], s.get("gate"), s["weight"], s["style"],
                       s.get("scale"), s["out"], s["gate_out"], 1e-6, *extra)
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
             baselines, keep=()):
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
    named = [(n, ada, c) for n, c in candidates(ada, dim, rows, broadcast, device).items()]
    if before is not None:
        named.append(("before", before, None))
    named = [c for c in named if not keep or c[0] in keep]
    done = {}  # a config named twice (rule = a sweep point) is timed once
    for name, module, cfg in named:
        key = (module.__name__, cfg)
        if key in done:
            rec["candidates"][name] = done[key]
            continue
        fn = ours_fn(module, fused, cfg)
        bad = verify(fn, sets[0], eager, formats)
        entry = {"cfg": cfg._asdict() if cfg else None, "ok": not bad}
        if bad:
            entry["note"] = bad
        elif not warm:
            entry["us"] = harness.graph_us(fn, sets, min_calls=calls)
        rec["candidates"][name] = done[key] = entry
    compiled = None
    if "compile" in baselines:
        compiled, rec["compile_status"] = harness.verified_compile(eager, sets, judge(formats))
    if warm:
        return rec
    time_it = lambda fn: harness.graph_us(fn, sets, min_calls=calls) if fn else None  # noqa: E731
    rec["eager_us"] = time_it(eager if "eager" in baselines else None)
    rec["compile_us"] = time_it(compiled)
    rec["copy_us"] = harness.same_size_copy_us(nbytes, len(sets)) if "copy" in baselines else None
    rec["copy_gbps_1gib"] = copy_gbps
    return rec


def summary(rec):
    timed = {k: v["us"] for k, v in rec["candidates"].items() if "us" in v}
    best = min(timed, key=timed.get)
    gbps = rec["bytes"] / (timed[best] * 1e-6) / 1e9
    fmt = lambda x: f"{x:7.2f}" if x else "    n/a"  # noqa: E731
    name = "gate_res_fp8" if "gate" in rec["function"] else "ada_rms_norm"
    return (f"{name:12s} {rec['rows']:5d}x{rec['D']:<5d} {rec['style']:7s} best {best:11s} "
            f"{timed[best]:7.2f} rule {fmt(timed.get('rule'))} before {fmt(timed.get('before'))} "
            f"compile {fmt(rec['compile_us'])} copy {fmt(rec['copy_us'])} "
            f"{100 * gbps / rec['copy_gbps_1gib']:4.0f}%")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--warm", action="store_true")
    ap.add_argument("--functions", default="")
    ap.add_argument("--styles", default="rows,1")
    ap.add_argument("--group", choices=("model", "large", "all"), default="all")
    ap.add_argument("--before", default=None)
    ap.add_argument("--shapes", default="", help="ROWSxD,... to measure (default: all)")
    ap.add_argument("--candidates", default="", help="names to time (default: all)")
    ap.add_argument("--baselines", default="eager,compile,copy")
    args = ap.parse_args()
    kernel = load_built(Package(PKG))
    ada = importlib.import_module(f"{kernel.__name__}.ada_norms")
    before = load_before(args.before) if args.before else None
    wanted = set(filter(None, args.functions.split(",")))
    styles = [s == "1" for s in args.styles.split(",")]
    shapes = set(filter(None, args.shapes.split(",")))
    grid = [(f, s, b) for f in cases.FUNCTIONS for s in bench.SHAPES for b in styles
            if (not wanted or f in wanted) and
            (args.group == "all" or (s[0] == "large traffic") == (args.group == "large"))
            and (not shapes or f"{s[1]}x{s[2]}" in shapes)]
    copy_gbps = None if args.warm else harness.copy_bandwidth_gbps()
    env = None if args.warm else harness.environment()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for function, (model, rows, dim), broadcast in grid:
        t0 = time.perf_counter()
        rec = tune_row(kernel, ada, before, function, model, rows, dim, broadcast,
                       warm=args.warm, copy_gbps=copy_gbps, baselines=args.baselines,
                       keep=set(filter(None, args.candidates.split(","))))
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
