"""Launch sweep of the single-segment gates: the record of how ``gates.flat_config`` was chosen.

``gate_residual_bf16`` (r + x·g) and ``bias_residual_bf16`` ((r + x) + b) on the model
shapes of bench_gates.py (10x1024, 10x2048, 512x1152) and the large-traffic 16384x4096.
Candidates (tune-local kernels, so the package carries only the winner):

* ``tile2d``: the earlier single-op kernel, 2-D tiles of 2048 elements (up to 256
  columns, ``BLOCK_R`` rows), 4 warps, int64 row offsets, masks on both dims, bias
  loaded per column (the joint3 kernels still use these tiles);
* ``flat bB wW``: the (rows, dim) tensors as one flat run, ``B`` elements per program,
  ``W`` warps, bias indexed by ``offset % dim``; modifiers ``even`` (no mask: B divides
  rows·dim), ``i64`` (int64 offsets), ``dimc`` (dim a constexpr: the ``% dim`` by a
  constant, one compile per width).

Baselines: the package call (its launch rule), torch.compile of reference.py (default
mode, dynamic=False, verified bit-exact against eager before it is timed) and a
same-size device copy. Every candidate is verified bit-exact (output buffer poisoned
first) before it is timed with harness.graph_us over harness.rotation_sets input sets.
``--budget S``: candidates left when S seconds have passed are recorded as skipped.
The GROOT joint3 row (51, 8, 4)x1536 (package vs compile) closes the run as a guard.

Usage: ``python tune_gates.py --out DIR [--budget S]``; writes DIR/tune_gates.json
(rewritten after every shape) and prints one line per candidate and shape.

Measured on NVIDIA H200 (graph replay, us). ``package`` was then ``flat b1024 w4`` with
``even`` where 1024 divides rows·dim and a runtime width; the launch chosen from this
run (now the package's) is ``flat b1024 w4 dimc``. Compile and the package were timed
twice (a / b): the repeat spread, the noise, is up to 0.02 us, except that the first
two timings of the run (gate 10x1024) sit 0.2 us below every later one of that row.

===============  =============  ======  =============  ==========  ==========
op, shape        compile a / b  tile2d  package a / b  b1024 dimc  b512 w4
===============  =============  ======  =============  ==========  ==========
gate 10x1024     1.03 / 1.25    1.50    1.05 / 1.27    1.25        1.20
gate 512x1152    3.05 / 3.03    3.56    3.06 / 3.05    3.08        3.06
gate 10x2048     1.29 / 1.28    1.56    1.28 / 1.29    1.30        1.26
gate 16384x4096  121.98/121.50  122.70  121.82/121.48  -           -
bias 10x1024     1.27 / 1.25    1.51    1.30 / 1.30    1.27        1.26
bias 512x1152    2.76 / 2.75    3.30    2.80 / 2.81    2.79        2.89
bias 10x2048     1.27 / 1.29    1.56    1.32 / 1.32    1.29        1.31
bias 16384x4096  93.45 / 93.41  94.01   93.35 / 93.29  -           -
===============  =============  ======  =============  ==========  ==========

At 16384x4096 the large list ran ``b1024 w4`` (121.90 / 93.44) and ``b1024 w4 even
dimc`` (121.81 / 93.27), not masked ``dimc``; every flat launch there but 512 x 8 warps
is within 0.5 % of compile, at 4.4 / 4.3 TB/s (the 1 GiB copy: 4.1 TB/s). That run
sized the bias rows' same-size copy with four full tensors instead of three (fixed).

* Flat beats the 2-D tiles by 0.25-0.5 us at 10 and 512 rows: the 2048-element
  tiles left 8 programs at 10 rows, four of them with 6 of their 8 rows masked, and
  a half-empty fifth column block at width 1152 (PTX: 186-192 instructions against
  88-97 flat).
* Against compile the best flat launches tie: 0.97-1.04x, inside the repeat
  spread. Nothing measured beats compile beyond the noise.
* Block / warps: 1024 x 4 (8 elements per thread) is as good as any. 256-512-element
  blocks gain at most 0.05 us at 10 rows and lose up to 0.35 us at 512x1152 (1.2 us
  with 128-element blocks; 17-33 us at 16384x4096 with 512 x 8 warps); 16 elements
  per thread (b1024 w2, b2048 w4, b4096 w8) lose 0.08-0.4 us except on the 512x1152
  bias row.
* ``dimc`` (``% dim`` of the bias index by a constant, no integer division) gains
  0.01-0.05 us on the bias rows over the runtime width, nothing on the gate rows;
  ``even`` lands within 0.04 us of the masked launch, mostly but not always ahead
  (13 pairs), so the package dropped it (one compile per width for every row count); ``i64`` costs 0.06-0.07 us on the 10-row bias rows (and timed
  0.05-0.09 us faster at 512x1152, unexplained); it stays the fallback from 2^31
  elements.
* joint3 GROOT (51, 8, 4)x1536, untouched code: package 2.37 us, compile 5.19 us
  (2.18x).
"""

import time

T0 = time.monotonic()  # the budget counts from here (before torch is imported)

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench import harness  # noqa: E402
from flashrt_tools.repo import ROOT, load_file, select  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built, reference_of  # noqa: E402

cases = load_file(ROOT / "flashrt-vla-residual-gates" / "tests" / "cases.py",
                  "_flashrt_cases_flashrt_vla_residual_gates")

SHAPES = ((10, 1024), (512, 1152), (10, 2048), (16384, 4096))
FUNCTIONS = ("gate_residual_bf16", "bias_residual_bf16")
MODE = {"gate_residual_bf16": 1, "bias_residual_bf16": 3}
JOINT3_GUARD = ("joint3_bias_gate_residual_bf16", (51, 8, 4), 1536)
DEVICE = "cuda"
LARGE = 1 << 24  # elements from which only the short candidate list runs
SHAPE_RESERVE_S = {False: 4.0, True: 8.0}  # a shape starts only this long before the budget


def bind_package(gates):
    """The package's tile and flat-run functions, for the tune-local kernels."""
    globals()["_segment_tile"] = gates._segment_tile
    globals()["_flat_run"] = gates._flat_run


@triton.jit(do_not_specialize=["rows"])
def _tile2d_kernel(res_ptr, x_ptr, b_ptr, g_ptr, out_ptr, rows, dim, MODE: tl.constexpr,
                   BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    _segment_tile(tl.program_id(0), res_ptr, x_ptr, b_ptr, g_ptr, None, out_ptr,  # noqa: F821
                  rows, dim, MODE=MODE, GATE_FP8=False, BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)


@triton.jit(do_not_specialize=["rows"])
def _flat_kernel(res_ptr, x_ptr, b_ptr, g_ptr, out_ptr, rows, dim, MODE: tl.constexpr,
                 BLOCK: tl.constexpr, EVEN: tl.constexpr, INT64: tl.constexpr,
                 DIM: tl.constexpr):
    """The package's flat kernel (``DIM`` > 0, no ``EVEN``, ``INT64`` as its rule says)
    with the switches it was chosen over: a runtime width (``DIM`` = 0), no mask."""
    if DIM > 0:
        width = DIM
    else:
        width = dim
    _flat_run(tl.program_id(0), res_ptr, x_ptr, b_ptr, g_ptr, out_ptr, rows,  # noqa: F821
              width, MODE=MODE, BLOCK=BLOCK, INT64=INT64, MASKED=not EVEN)


def tile2d_call(mode, rows, dim):
    block_c = min(256, triton.next_power_of_2(dim))
    block_r = 2048 // block_c
    grid = (triton.cdiv(rows, block_r) * triton.cdiv(dim, block_c),)

    def call(s):
        kw, out = s
        _tile2d_kernel[grid](kw["residual"], kw["x"], kw.get("bias"), kw.get("gate"), out, rows,
                             dim, MODE=mode, BLOCK_R=block_r, BLOCK_C=block_c, num_warps=4,
                             enable_fp_fusion=False)
        return out
    return call


def flat_call(mode, rows, dim, block, warps, even=False, i64=False, dimc=False):
    grid = (triton.cdiv(rows * dim, block),)

    def call(s):
        kw, out = s
        _flat_kernel[grid](kw["residual"], kw["x"], kw.get("bias"), kw.get("gate"), out, rows,
                           dim, MODE=mode, BLOCK=block, EVEN=even, INT64=i64,
                           DIM=dim if dimc else 0, num_warps=warps, enable_fp_fusion=False)
        return out
    return call


# (block, warps, modifiers), in priority order (the budget cuts from the end).
SMALL_CANDIDATES = (
    (1024, 4, ()), (512, 2, ()), (512, 4, ()), (256, 1, ()), (512, 1, ()), (1024, 2, ()),
    (1024, 8, ()), (2048, 4, ()), (2048, 8, ()), (4096, 8, ()),
    (512, 2, ("even",)), (512, 4, ("even",)), (256, 1, ("even",)), (2048, 4, ("even",)),
    (1024, 4, ("even", "dimc")), (512, 2, ("even", "dimc")), (1024, 4, ("dimc",)),
    (1024, 4, ("even", "i64")), (512, 8, ()), (256, 4, ()), (256, 2, ()), (128, 1, ()),
)
LARGE_CANDIDATES = (
    (1024, 4, ()), (2048, 8, ("even",)), (4096, 8, ("even",)), (1024, 4, ("even", "i64")),
    (512, 8, ("even",)), (1024, 4, ("even", "dimc")),
)


def candidate_name(block, warps, mods):
    return " ".join([f"flat b{block} w{warps}", *mods])


def make_sets(function, rows, dim, device):
    """L2-rotated input sets; past the first (the verified one), large sets are copies."""
    n_sets = harness.rotation_sets(rows * dim * 2 * 4)
    sets = []
    for i in range(n_sets):
        if i and rows * dim >= LARGE:
            kw = {k: v.clone() for k, v in sets[0][0].items()}
        else:
            kw = cases.single_inputs(function, rows, dim, device, torch.Generator().manual_seed(i))
        sets.append((kw, torch.empty_like(kw["residual"])))
    return sets


def _judge(got, want):
    got = got if isinstance(got, (tuple, list)) else (got,)
    want = want if isinstance(want, (tuple, list)) else (want,)
    return [compare("exact", g, w) for g, w in zip(got, want)]


def sweep(kernel, function, rows, dim, clock, log):
    if not clock.left(SHAPE_RESERVE_S[rows * dim >= LARGE]):
        log(f"  {function[:4]} {rows}x{dim}: skipped (budget)")
        return {"function": function, "shape": f"rows={rows},D={dim}", "skipped": "budget"}
    reference = reference_of(kernel)
    mode = MODE[function]
    sets = make_sets(function, rows, dim, torch.device(DEVICE))
    nbytes = rows * dim * 2 * (4 if mode == 1 else 3) + (dim * 2 if mode == 3 else 0)
    eager = lambda s: getattr(reference, function)(**s[0])  # noqa: E731
    want = eager(sets[0])
    rec = {"function": function, "shape": f"rows={rows},D={dim}", "bytes": nbytes,
           "input_sets": len(sets), "candidates": []}

    def timed(name, call, poison=True):
        if not clock.left(1.0):
            rec["candidates"].append({"name": name, "skipped": "budget"})
            return None
        if poison:
            sets[0][1].fill_(float("nan"))
        verdicts = _judge(call(sets[0]), want)
        if not all(v.ok for v in verdicts):
            rec["candidates"].append({"name": name, "ok": False,
                                      "note": "; ".join(v.message for v in verdicts)})
            log(f"  {function[:4]} {rows}x{dim} {name:26s} REJECT {verdicts[0].message}")
            return None
        us = harness.graph_us(call, sets)
        rec["candidates"].append({"name": name, "ok": True, "us": us})
        return us

    rec["same_size_copy_us"] = harness.same_size_copy_us(nbytes, len(sets))
    compiled, rec["compile_status"] = harness.verified_compile(eager, sets, _judge)
    rec["compile_us"] = harness.graph_us(compiled, sets) if compiled else None
    timed("package", lambda s: getattr(kernel, function)(**s[0], out=s[1]))
    timed("tile2d", tile2d_call(mode, rows, dim))
    for block, warps, mods in (LARGE_CANDIDATES if rows * dim >= LARGE else SMALL_CANDIDATES):
        if "even" in mods and (rows * dim) % block:
            continue
        timed(candidate_name(block, warps, mods),
              flat_call(mode, rows, dim, block, warps, **{m: True for m in mods}))
    if compiled and clock.left(1.0):  # the spread of the method, on the two that matter
        rec["compile_repeat_us"] = harness.graph_us(compiled, sets)
        timed("package (repeat)", lambda s: getattr(kernel, function)(**s[0], out=s[1]))
    comp = rec["compile_us"]
    log(f"  {function[:4]} {rows}x{dim}: compile {comp or 0:.2f} us (repeat "
        f"{rec.get('compile_repeat_us') or 0:.2f}; {rec['compile_status']}), same-size copy "
        f"{rec['same_size_copy_us']:.2f} us, {len(sets)} sets")
    for c in rec["candidates"]:
        if c.get("us"):
            c["x_compile"] = comp / c["us"] if comp else None
            c["pct_same_size_copy"] = 100 * rec["same_size_copy_us"] / c["us"]
            log(f"  {function[:4]} {rows}x{dim} {c['name']:26s} {c['us']:7.2f} us  "
                f"x{c['x_compile'] or 0:.3f} compile  {c['pct_same_size_copy']:5.1f}% copy")
        elif c.get("skipped"):
            log(f"  {function[:4]} {rows}x{dim} {c['name']:26s} skipped ({c['skipped']})")
    del sets
    torch.cuda.empty_cache()
    return rec


def joint3_guard(kernel, clock, log):
    """The package's joint3 call beside verified compile on the GROOT shape."""
    function, seg_rows, dim = JOINT3_GUARD
    rec = {"function": function, "shape": f"rows={'/'.join(map(str, seg_rows))},D={dim}"}
    if not clock.left(SHAPE_RESERVE_S[False]):
        rec["skipped"] = "budget"
        return rec
    reference = reference_of(kernel)
    device = torch.device(DEVICE)
    sets = []
    for i in range(64):
        kw = cases.joint3_inputs(function, seg_rows, (dim,) * 3, device,
                                 torch.Generator().manual_seed(i))
        sets.append((kw, tuple(torch.empty_like(kw[f"{s}_residual"]) for s in "vau")))

    def ours(s):
        return getattr(kernel, function)(**s[0], v_out=s[1][0], a_out=s[1][1], u_out=s[1][2])

    eager = lambda s: getattr(reference, function)(**s[0])  # noqa: E731
    ok = all(v.ok for v in _judge(ours(sets[0]), eager(sets[0])))
    compiled, rec["compile_status"] = harness.verified_compile(eager, sets, _judge)
    rec["package_us"] = harness.graph_us(ours, sets) if ok else None
    rec["compile_us"] = harness.graph_us(compiled, sets) if compiled else None
    if rec["package_us"] and rec["compile_us"]:
        log(f"  joint3 GROOT {rec['shape']}: package {rec['package_us']:.2f} us, compile "
            f"{rec['compile_us']:.2f} us (x{rec['compile_us'] / rec['package_us']:.3f})")
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=600.0, help="seconds for the sweep")
    args = ap.parse_args()
    clock = harness.Clock(args.budget, T0)
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = 1  # in-process Triton compiles: the same kernels, no pool
    env = harness.environment()
    env["copy_gbps"] = harness.copy_bandwidth_gbps()
    print(f"{env['gpu']}: copy ceiling {env['copy_gbps']:.0f} GB/s")
    kernel = load_built(select(["vla-residual-gates"])[0])
    bind_package(importlib.import_module(f"{kernel.__name__}.gates"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"environment": env, "budget_s": args.budget, "rows": []}

    def write():
        record["elapsed_s"] = clock.elapsed()
        (out / "tune_gates.json").write_text(json.dumps(record, indent=1) + "\n")

    for rows, dim in SHAPES:
        for function in FUNCTIONS:
            record["rows"].append(sweep(kernel, function, rows, dim, clock, print))
            write()
    record["joint3_guard"] = joint3_guard(kernel, clock, print)
    write()
    summary(record, print)
    print(f"done in {clock.elapsed():.1f} s")


def summary(record, log):
    """Per shape: compile, the package and the fastest verified candidate."""
    log("summary (us; x = compile / candidate):")
    for r in record["rows"]:
        timed = [c for c in r.get("candidates", ()) if c.get("us")]
        if not timed:
            log(f"  {r['function'][:4]} {r['shape']}: not measured")
            continue
        best = min(timed, key=lambda c: c["us"])
        pkg = next((c for c in timed if c["name"] == "package"), None)
        old = next((c for c in timed if c["name"] == "tile2d"), None)
        comp = r.get("compile_us") or 0

        def fmt(c):
            return f"{c['us']:.2f} (x{comp / c['us']:.3f})" if c else "n/a"

        log(f"  {r['function'][:4]} {r['shape']:18s} compile {comp:.2f} tile2d {fmt(old)} "
            f"package {fmt(pkg)} best {best['name']} {fmt(best)}")


if __name__ == "__main__":
    main()
