"""Where the time of the SiLU*up -> NVFP4 encoder goes, and how its design was chosen.

The op is issue-bound, not memory-bound, at video shapes: per element it runs
libdevice exp + an IEEE division (SiLU), two bf16 roundings, and the E2M1
code; per 16-block the UE4M3 scale. Candidates (one tune-local kernel on the
shared codec's encode, constexpr switches; every candidate is verified
byte-exact against reference.py before it is timed):

* ``PACK_CVT``: both bf16 roundings as one ``cvt.rn.bf16x2.f32`` per element
  pair (F2FP) instead of two scalar conversions;
* tile shapes ``BLOCK_R x G`` blocks and ``num_warps``.

Baselines: the package op, eager reference.py, torch.compile of it (``--compile``;
verified against eager, else reported unsupported), a same-size device copy.
Timing: CUDA-graph replay over L2-rotated inputs (harness.graph_us).
Writes ``tune_quant.json`` to --out.

Measured on H200 (2520 x 12288, same-size copy 52.8 us) with the codec's earlier
seven-compare E2M1 code: package 78.3 us; PACK_CVT alone 79.8; a bit-level E2M1 code
(the bits of ``rz(|v| * 2^-126)``) 56.1; both 53.8-54.1; other tiles no better. The
bit-level code then became the codec's (common/nvfp4_codec.py; the package bench:
58.6 us); the package keeps its kernel and launch rule.
"""

import argparse
import importlib
import json
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench import harness  # noqa: E402
from flashrt_tools.repo import ROOT, load_file, select  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built, reference_of  # noqa: E402

SHAPES = ((2520, 12288), (1024, 16384), (2520, 4096), (1, 4096), (16, 12288))


@triton.jit
def _bf16x2_rn(lo, hi):
    """int32 word bf16(hi) << 16 | bf16(lo), round to nearest even (one F2FP)."""
    return tl.inline_asm_elementwise("cvt.rn.bf16x2.f32 $0, $2, $1;", "=r,f,f", [lo, hi],
                                     dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _lo(w):
    return (w << 16).to(tl.float32, bitcast=True)


@triton.jit
def _hi(w):
    return (w & -65536).to(tl.float32, bitcast=True)


def bind_codec(codec):
    """The codec's device functions, from the built package (the tune kernels' globals)."""
    for name in ("encode_blocks", "swizzled_offset"):
        globals()[name] = getattr(codec, name)


@triton.jit(do_not_specialize=["n_rows", "stride_w"])
def _tune_kernel(gate_ptr, up_ptr, packed_ptr, scales_ptr, n_rows, stride_w, n_blocks,
                 n_col_super, BLOCK_R: tl.constexpr, G: tl.constexpr, PACK_CVT: tl.constexpr):
    i_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    i_b = tl.program_id(1) * G + tl.arange(0, G)
    o_w = tl.arange(0, 8)
    m2 = (i_r < n_rows)[:, None] & (i_b < n_blocks)[None, :]
    m3 = m2[:, :, None]
    o_col = i_b[None, :, None] * 8 + o_w[None, None, :]
    b_g = tl.load(gate_ptr + i_r[:, None, None] * stride_w + o_col, mask=m3, other=0)
    b_u = tl.load(up_ptr + i_r[:, None, None] * stride_w + o_col, mask=m3, other=0)
    g_lo = _lo(b_g)
    g_hi = _hi(b_g)
    s_lo = tl.div_rn(g_lo, 1.0 + libdevice.exp(-g_lo))
    s_hi = tl.div_rn(g_hi, 1.0 + libdevice.exp(-g_hi))
    if PACK_CVT:
        sw = _bf16x2_rn(s_lo, s_hi)
        yw = _bf16x2_rn(_lo(sw) * _lo(b_u), _hi(sw) * _hi(b_u))
        y_lo = _lo(yw)
        y_hi = _hi(yw)
    else:
        y_lo = (s_lo.to(tl.bfloat16).to(tl.float32) * _lo(b_u)).to(tl.bfloat16).to(tl.float32)
        y_hi = (s_hi.to(tl.bfloat16).to(tl.float32) * _hi(b_u)).to(tl.bfloat16).to(tl.float32)
    byte, e = encode_blocks(y_lo, y_hi)  # noqa: F821 (bound by bind_codec)
    tl.store(packed_ptr + i_r[:, None, None] * (n_blocks * 8) + o_col, byte.to(tl.uint8),
             mask=m3)
    tl.store(scales_ptr + swizzled_offset(i_r[:, None], i_b[None, :], n_col_super),  # noqa: F821
             e.to(tl.uint8), mask=m2)


def _variant(kern, rows, cols, block_r, g, num_warps, pack_cvt):
    n_blocks = cols // 16
    grid = (triton.cdiv(rows, block_r), triton.cdiv(n_blocks, g))

    def run(s):
        x, (packed, scales) = s
        kern[grid](x["gate"].view(torch.int32), x["up"].view(torch.int32), packed, scales, rows,
                   cols // 2, n_blocks, triton.cdiv(n_blocks, 4), BLOCK_R=block_r, G=g,
                   PACK_CVT=pack_cvt, num_warps=num_warps)
        return packed, scales
    return run


def _judge(got, want):
    return [compare("exact", g, w) for g, w in zip(got, want)]


def _candidates(rows, cols, quick):
    base = [(4, 32, 4)] if rows >= 4 else [(1, 64, 2), (1, 32, 1)]
    tiles = base + ([] if quick or rows < 64 else [(8, 32, 8), (8, 32, 4), (16, 32, 8)])
    return ([(t, pc) for pc in (False, True) for t in base]
            + [(t, True) for t in tiles if t not in base])


def sweep_shape(kernel, kern, cases, rows, cols, args, log):
    reference = reference_of(kernel)
    dev = torch.device("cuda")
    nbytes = rows * cols * 4 + rows * cols // 2 + rows * cols // 16
    sets = []
    for i in range(harness.rotation_sets(nbytes)):
        x = cases.split_inputs(rows, cols, dev, torch.Generator().manual_seed(i))
        sets.append((x, (torch.empty(rows, cols // 2, dtype=torch.uint8, device=dev),
                         torch.zeros(kernel.nvfp4_swizzled_scale_bytes(rows, cols),
                                     dtype=torch.uint8, device=dev))))
    eager = lambda s: reference.silu_mul_quant_nvfp4_swizzled_bf16(**s[0])  # noqa: E731
    want = eager(sets[0])
    timed = []

    def time(name, fn):
        verdicts = _judge(fn(sets[0]), want)
        if not all(v.ok for v in verdicts):
            timed.append({"name": name, "ok": False,
                          "note": "; ".join(v.message for v in verdicts)})
            return
        timed.append({"name": name, "ok": True, "us": harness.graph_us(fn, sets)})

    time("package", lambda s: kernel.silu_mul_quant_nvfp4_swizzled_bf16(
        **s[0], packed=s[1][0], scales=s[1][1]))
    if rows * cols <= 2520 * 4096:  # support evidence only; slow at the largest shapes
        time("eager", eager)
    if args.compile and rows >= 1024:
        compiled, status = harness.verified_compile(eager, sets, _judge)
        if compiled:
            time("compile", compiled)
        else:
            timed.append({"name": "compile", "ok": False, "note": status})
    for (br, g, nw), pc in _candidates(rows, cols, args.quick):
        name = f"br={br} G={g} nw={nw}" + (" pack_cvt" if pc else "")
        time(name, _variant(kern, rows, cols, br, g, nw, pc))
    copy_us = harness.same_size_copy_us(nbytes, len(sets))
    log(f"  rows={rows} C={cols}: {nbytes / 1e6:.1f} MB, same-size copy {copy_us:.2f} us")
    for r in timed:
        if r.get("us"):
            r["gbps"] = nbytes / (r["us"] * 1e-6) / 1e9
            r["pct_copy_bw"] = 100 * r["gbps"] / args.copy_gbps
            r["pct_same_size_copy"] = 100 * copy_us / r["us"]
            log(f"    {r['name']:36s} {r['us']:8.2f} us {r['gbps']:6.0f} GB/s "
                f"{r['pct_copy_bw']:5.1f}% copy {r['pct_same_size_copy']:5.1f}% same-size")
        else:
            log(f"    {r['name']:36s} not timed: {r['note'][:150]}")
    del sets
    torch.cuda.empty_cache()
    return {"shape": f"rows={rows},C={cols}", "bytes": nbytes, "same_size_copy_us": copy_us,
            "rows": timed}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--compile", action="store_true", help="verify + time torch.compile")
    ap.add_argument("--quick", action="store_true", help="flag variants at the default tile only")
    ap.add_argument("--shapes", default=",".join(f"{r}x{c}" for r, c in SHAPES))
    args = ap.parse_args()
    env = harness.environment()
    args.copy_gbps = env["copy_gbps"] = harness.copy_bandwidth_gbps()
    print(f"{env['gpu']}: copy ceiling {env['copy_gbps']:.0f} GB/s")
    kernel = load_built(select(["fused-quant"])[0])
    codec = importlib.import_module(f"{kernel.__name__}.nvfp4_codec")
    cases = load_file(ROOT / "flashrt-fused-quant" / "tests" / "cases.py",
                      "_flashrt_cases_flashrt_fused_quant")
    bind_codec(codec)
    kern = _tune_kernel
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    record = {"environment": env,
              "shapes": [sweep_shape(kernel, kern, cases, r, c, args, print) for r, c in shapes]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune_quant.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
