"""flashrt-smallm-gemm at small M: NVFP4 W4A4 matvec and weight-only linear.

Grid: M in {1, 4, 10, 16, 64} x (K, N) in {(1024, 8192), (4096, 1024),
(2048, 16384), (16384, 2048), (4096, 4096)}; the weight quantizer on the same
weights. Byte model: packed weight N*K/2 + scales N*K/16 + activations
(bf16 2*M*K or NVFP4 M*K/2 + M*K/16) + bf16 output 2*M*N; flops 2*M*N*K.
``weight_tbps`` = weight + scale bytes / time (the stream that bounds small M).

Baselines (same run, CUDA-graph replay):
* library: BF16 ``F.linear`` on the dequantized (exact bf16) operands with alpha
  folded into the weight (a power of two: exact), one GEMM: the path a user
  without NVFP4 kernels would run (4x the weight bytes). The H100 record of
  2026-11-24 timed ``F.linear(x, W) * alpha``, an extra kernel (0.7-2.1 us at
  these sizes on H200), so its BF16 ratios flatter ours;
* extra field ``fp8_scaled_mm_us``: ``torch._scaled_mm`` FP8 E4M3 with
  per-tensor fp32 scales (M padded to 16), 2x our weight bytes; timing only
  (its quantization differs, so it is not verified against ours);
* extra field ``fp8_ours_us``: flashrt-fp8-ffn's ``fp8_gemm_bf16`` on the same
  FP8 operands (our FP8 GEMM; timing only, like ``fp8_scaled_mm_us``).
Targets: weight-only linear >= 2x BF16 cuBLAS and faster than FP8 _scaled_mm
at M <= 16.

Run: ``flashrt bench smallm-gemm`` on a GPU.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench.harness import (  # noqa: E402
    graph_us, measure_row, reject_note, rotation_sets)
from flashrt_tools.repo import ROOT, load_file  # noqa: E402

cases = load_file(ROOT / "flashrt-smallm-gemm" / "tests" / "cases.py",
                  "_flashrt_cases_flashrt_smallm_gemm")

MS = (1, 4, 10, 16, 64)
KN = ((1024, 8192), (4096, 1024), (2048, 16384), (16384, 2048), (4096, 4096))
ALPHA = 0.5  # power of two: F.linear(x, alpha * W) rounds like the reference


def _fp8_scaled_mm(M, N, K, device):
    """(callable over set index, n_sets) for torch._scaled_mm at this shape, or None."""
    try:
        Mp = max(16, -(-M // 16) * 16)
        n = rotation_sets(N * K)
        w = [torch.randn(N, K, device=device).to(torch.float8_e4m3fn) for _ in range(n)]
        x = torch.randn(Mp, K, device=device).to(torch.float8_e4m3fn)
        one = torch.ones((), device=device)
        torch._scaled_mm(x, w[0].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        return lambda i: torch._scaled_mm(x, w[i].t(), scale_a=one, scale_b=one,
                                          out_dtype=torch.bfloat16), n
    except Exception as e:  # reported in the row, not fatal
        return str(e)[:100], 0


def _fp8_ours(M, N, K, device):
    """(callable over set index, n_sets) for flashrt-fp8-ffn's fp8_gemm_bf16, or a reason."""
    try:
        from flashrt_tools.repo import Package
        from flashrt_tools.validation import load_built

        fp8_ffn = load_built(Package("flashrt-fp8-ffn"))
        n = rotation_sets(N * K)
        w = [torch.randn(N, K, device=device).to(torch.float8_e4m3fn) for _ in range(n)]
        x = torch.randn(M, K, device=device).to(torch.float8_e4m3fn)
        one = torch.ones(1, device=device)
        out = torch.empty(M, N, dtype=torch.bfloat16, device=device)
        return lambda i: fp8_ffn.fp8_gemm_bf16(x, w[i], one, one, out), n
    except Exception as e:  # reported in the row, not fatal
        return str(e)[:100], 0


def _linear_rows(ctx, device, M, K, N):
    wbytes = N * K // 2 + N * K // 16
    nbytes = wbytes + 2 * M * K + 2 * M * N
    sets = []
    for i in range(rotation_sets(nbytes)):
        (x, w, s), _ = cases.linear_inputs(M, N, K, device, torch.Generator().manual_seed(i),
                                           bias=False)
        wd = ctx.reference.dequantize(w, s, N, K).to(torch.bfloat16) * ALPHA  # exact
        sets.append((x, w, s, wd, torch.empty(M, N, dtype=torch.bfloat16, device=device)))
    tol = cases.gemm_tolerance(K, ALPHA, 1.0)
    row = measure_row(
        op="nvfp4_weight_only_linear_bf16", shape=f"M={M},K={K},N={N}", model="small-M linear",
        sets=sets, ours=lambda t: ctx.kernel.nvfp4_weight_only_linear_bf16(
            t[0], t[1], t[2], alpha=ALPHA, out=t[4]),
        reference=lambda t: ctx.reference.nvfp4_weight_only_linear_bf16(t[0], t[1], t[2],
                                                                         alpha=ALPHA),
        library=lambda t: F.linear(t[0], t[3]), formats=("gemm",), compare_kwargs=tol,
        nbytes=nbytes, flops=2 * M * N * K, copy_gbps=ctx.copy_gbps, log=ctx.log)
    del sets
    return row, wbytes


def _matvec_row(ctx, device, M, K, N):
    wbytes = N * K // 2 + N * K // 16
    nbytes = wbytes + M * K // 2 + M * K // 16 + 2 * M * N
    sets = []
    for i in range(rotation_sets(nbytes)):
        args, _ = cases.matvec_inputs(M, N, K, device, torch.Generator().manual_seed(i))
        a = ctx.reference.dequantize(args[0], args[2], M, K).to(torch.bfloat16)
        b = ctx.reference.dequantize(args[1], args[3], N, K).to(torch.bfloat16) * ALPHA
        sets.append((args, a, b, torch.empty(M, N, dtype=torch.bfloat16, device=device)))
    tol = cases.gemm_tolerance(K, ALPHA, cases.E2M1_MEAN_SQ * cases.SCALE_MEAN_SQ)

    def shaped(y):
        return y.reshape(M, N)

    row = measure_row(
        op="nvfp4_w4a4_decode_matvec_bf16out", shape=f"M={M},K={K},N={N}", model="small-M W4A4",
        sets=sets, ours=lambda t: ctx.kernel.nvfp4_w4a4_decode_matvec_bf16out(
            *t[0], alpha=ALPHA, out=t[3]),
        reference=lambda t: shaped(ctx.reference.nvfp4_w4a4_decode_matvec_bf16out(
            *t[0], alpha=ALPHA)),
        library=lambda t: F.linear(t[1], t[2]), formats=("gemm",), compare_kwargs=tol,
        nbytes=nbytes, flops=2 * M * N * K, copy_gbps=ctx.copy_gbps, log=ctx.log)
    del sets
    return row, wbytes


def _quant_row(ctx, device, K, N):
    nbytes = 2 * N * K + N * K // 2 + N * K // 16
    sets = []
    for i in range(rotation_sets(nbytes)):
        (w,), kw = cases.weight_inputs(N, K, device, torch.Generator().manual_seed(i))
        sets.append((w, kw["global_scale"], torch.empty(N, K // 2, dtype=torch.uint8, device=device),
                     torch.zeros(-(-N // 128) * -(-(K // 16) // 4) * 512, dtype=torch.uint8,
                                 device=device)))
    gs = sets[0][1]
    return measure_row(
        op="nvfp4_quantize_weight_bf16", shape=f"K={K},N={N}", model="weight prep", sets=sets,
        ours=lambda t: ctx.kernel.nvfp4_quantize_weight_bf16(
            t[0], global_scale=gs, packed=t[2], scales=t[3]),
        reference=lambda t: ctx.reference.nvfp4_quantize_weight_bf16(t[0], global_scale=gs),
        formats=("exact", "exact"), nbytes=nbytes, copy_gbps=ctx.copy_gbps, log=ctx.log)


def benchmark(ctx):
    device = torch.device("cuda")
    rows = []
    for K, N in (KN[:2] if ctx.quick else KN):
        for M in ((1, 16) if ctx.quick else MS):
            fp8 = _fp8_scaled_mm(M, N, K, device)
            fp8_us = graph_us(fp8[0], list(range(fp8[1]))) if callable(fp8[0]) else None
            ours8 = _fp8_ours(M, N, K, device)
            ours8_us = graph_us(ours8[0], list(range(ours8[1]))) if callable(ours8[0]) else None
            for build in (_linear_rows, _matvec_row):
                row, wbytes = build(ctx, device, M, K, N)
                if "ours_us" in row:
                    row["weight_tbps"] = wbytes / (row["ours_us"] * 1e-6) / 1e12
                    row["fp8_scaled_mm_us"] = fp8_us
                    row["fp8_ours_us"] = ours8_us  # flashrt-fp8-ffn fp8_gemm_bf16
                    if fp8_us is None:
                        row["fp8_scaled_mm_note"] = f"unsupported: {fp8[0]}"
                rows.append(row)
            torch.cuda.empty_cache()
        rows.append(_quant_row(ctx, device, K, N))
    return rows


def target_notes(rows):
    notes = []
    for r in rows:
        if r.get("label") == "reject":
            notes.append(reject_note(r))
            continue
        if r["op"] == "nvfp4_quantize_weight_bf16":
            notes.append(f"{r['op']} {r['shape']}: {r['ours_us']:.2f} us, "
                         f"{r['pct_copy_bw'] or 0:.0f}% copy BW (offline weight prep)")
            continue
        M = int(r["shape"].split("M=")[1].split(",")[0])
        lib, fp8 = r.get("library_us"), r.get("fp8_scaled_mm_us")
        extra = (f"{r['ours_us']:.2f} us, x BF16 F.linear {lib / r['ours_us'] if lib else 0:.2f}, "
                 f"FP8 _scaled_mm {fp8 or 0:.2f} us, our FP8 GEMM {r.get('fp8_ours_us') or 0:.2f} us, "
                 f"weight stream {r.get('weight_tbps', 0):.2f} TB/s")
        if r["op"] == "nvfp4_weight_only_linear_bf16" and M <= 16:
            checks = [(">= 2x BF16 cuBLAS", bool(lib) and lib / r["ours_us"] >= 2.0),
                      ("faster than FP8 _scaled_mm", bool(fp8) and r["ours_us"] < fp8)]
            missed = [n for n, ok in checks if not ok]
            notes.append(f"{r['op']} {r['shape']}: {'met' if not missed else 'MISSED ' + ', '.join(missed)} ({extra})")
        else:
            notes.append(f"{r['op']} {r['shape']}: ({extra})")
    return notes


if __name__ == "__main__":
    from flashrt_tools.bench.run import bench

    sys.exit(bench(["flashrt-smallm-gemm"], quick="--quick" in sys.argv))
