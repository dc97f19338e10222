"""Launch-configuration sweep of the small-M NVFP4 GEMMs (how the launch rule was chosen).

For each decode shape (K, N) and row count M, every variant is verified first
(against reference.py: the exact packed tensors dequantized, float64 sum; split-K
variants also run twice and must agree bit for bit), then timed with the harness
(CUDA-graph replay over L2-rotated input sets: each call streams weights that are
not in L2, as the distinct weights of a model's layers are). Baselines side by
side: BF16 ``F.linear`` on the dequantized (exact) weight, ``torch._scaled_mm`` FP8
E4M3 (M padded to 16; timing only), and the package's default launch.

Variants: the CUDA-core GEMV (``gemv``: BLOCK_N, BLOCK_B, warps, programs per SM)
and the tl.dot kernel (``dot``: BLOCK_N, BLOCK_KH, warps, stages, programs per SM).
The launch rule in smallm.py (``gemm_config``) was chosen from this sweep on an
NVIDIA H200: the GEMV at M = 1 for BF16 activations (at M = 4 the dot kernel was
1.2-2x faster) and up to M = 4 for NVFP4 ones, the dot kernel's 128-row / 8-warp
tiles for more than 32 rows (1.1-1.3x faster at M = 64).

Run on a GPU: ``python3 flashrt-smallm-gemm/benchmarks/tune_smallm.py --out DIR``
(``--budget S`` stops timing new rows after S seconds; JSON is written after each row).
"""

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench.harness import graph_us, rotation_sets  # noqa: E402
from flashrt_tools.repo import ROOT, Package, load_file  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built, reference_of  # noqa: E402

cases = load_file(ROOT / "flashrt-smallm-gemm" / "tests" / "cases.py",
                  "_flashrt_cases_flashrt_smallm_gemm")

SHAPES = ((1024, 8192), (4096, 1024), (2048, 16384), (16384, 2048), (4096, 4096))
MS = (1, 2, 4, 8, 10, 16, 64)
ALPHA = 0.5
# gemv: (BLOCK_N, BLOCK_B, warps, programs per SM)
GEMV = ((32, 32, 4, 4), (64, 32, 4, 4), (32, 64, 4, 4), (32, 32, 4, 8), (16, 32, 2, 8))
# dot: (BLOCK_N, BLOCK_KH, warps, stages, programs per SM)
DOT = ((64, 128, 4, 3, 2), (128, 128, 8, 3, 2), (64, 256, 4, 3, 2), (64, 128, 4, 3, 4))


def variants(sm, M, N, K, dev):
    """(name, config) pairs: every GEMV shape up to 2 rows, the default one up to 8;
    the dot configurations from 2 rows (only the default one at 1)."""
    gemv = GEMV if M <= 2 else (GEMV[:1] if M <= 8 else ())
    out = [("gemv%dx%dw%dp%d" % g, sm.gemv_config(M, N, K // 16, dev, *g)) for g in gemv]
    out += [("dot%dx%dw%ds%dp%d" % d, sm.dot_config(M, N, K // 16, dev, *d))
            for d in (DOT if M >= 2 else DOT[:1])]
    return out


def fp4_sets(M, N, K, dev, n, a_fp4):
    sets = []
    nbytes = -(-N // 128) * -(-(K // 16) // 4) * 512
    for i in range(n):
        g = torch.Generator(device=dev).manual_seed(i)
        w = torch.randint(0, 256, (N, K // 2), generator=g, device=dev, dtype=torch.uint8)
        s = torch.randint(0x30, 0x40, (nbytes,), generator=g, device=dev, dtype=torch.uint8)
        if a_fp4:
            a = torch.randint(0, 256, (M, K // 2), generator=g, device=dev, dtype=torch.uint8)
            sa = torch.randint(0x30, 0x40, (-(-M // 128) * -(-(K // 16) // 4) * 512,),
                               generator=g, device=dev, dtype=torch.uint8)
        else:
            a = torch.randn(M, K, generator=g, device=dev).to(torch.bfloat16)
            sa = None
        sets.append((a, sa, w, s, torch.empty(M, N, dtype=torch.bfloat16, device=dev)))
    return sets


def run_row(sm, ref, M, K, N, a_fp4, dev, only_default=False):
    wbytes = N * K // 2 + N * K // 16
    sets = fp4_sets(M, N, K, dev, rotation_sets(wbytes), a_fp4)
    a, sa, w, s, _ = sets[0]
    if a_fp4:
        want = ref.nvfp4_w4a4_decode_matvec_bf16out(a, w, sa, s, alpha=ALPHA).reshape(M, N)
        tol = cases.gemm_tolerance(K, ALPHA, cases.E2M1_MEAN_SQ * cases.SCALE_MEAN_SQ)["gemm"]
    else:
        want = ref.nvfp4_weight_only_linear_bf16(a, w, s, alpha=ALPHA)
        tol = cases.gemm_tolerance(K, ALPHA, 1.0)["gemm"]
    row = {"op": "matvec" if a_fp4 else "linear", "M": M, "K": K, "N": N,
           "weight_bytes": wbytes, "variants": {}}

    def call(cfg):
        return lambda t: sm._launch_gemm(t[0], t[1], t[2], t[3], None, t[4], M, ALPHA, a_fp4, cfg)

    todo = [("default", None)] + (variants(sm, M, N, K, dev)[:2] if only_default
                                  else variants(sm, M, N, K, dev))
    for name, cfg in todo:
        fn = call(cfg)
        try:
            fn(sets[0])
            got = sets[0][4].clone()
            fn(sets[0])
            same = torch.equal(got.view(torch.int16), sets[0][4].view(torch.int16))
            v = compare("gemm", got, want, **tol)
            if not (v.ok and same):
                row["variants"][name] = {"cfg": cfg, "error": f"verify: {v.message} same={same}"}
                continue
            us = graph_us(fn, sets)
        except Exception as e:  # a variant that fails to compile is reported, not fatal
            row["variants"][name] = {"cfg": cfg, "error": f"{type(e).__name__}: {str(e)[:160]}"}
            continue
        row["variants"][name] = {"cfg": cfg, "us": us,
                                 "weight_tbps": wbytes / us / 1e6}
    del sets
    if not a_fp4:
        row.update(baselines(M, N, K, dev))
    torch.cuda.empty_cache()
    return row


def baselines(M, N, K, dev):
    res = {}
    n = rotation_sets(2 * N * K)
    wb = [torch.randn(N, K, device=dev).to(torch.bfloat16) for _ in range(n)]
    x = torch.randn(M, K, device=dev).to(torch.bfloat16)
    res["bf16_linear_us"] = graph_us(lambda i: F.linear(x, wb[i]) * ALPHA, list(range(n)))
    try:
        n = rotation_sets(N * K)
        w8 = [torch.randn(N, K, device=dev).to(torch.float8_e4m3fn) for _ in range(n)]
        x8 = torch.randn(max(16, -(-M // 16) * 16), K, device=dev).to(torch.float8_e4m3fn)
        one = torch.ones((), device=dev)
        res["fp8_scaled_mm_us"] = graph_us(
            lambda i: torch._scaled_mm(x8, w8[i].t(), scale_a=one, scale_b=one,
                                       out_dtype=torch.bfloat16), list(range(n)))
    except Exception as e:
        res["fp8_scaled_mm_us"] = None
        res["fp8_note"] = str(e)[:100]
    return res


def summary(row):
    ok = {k: v for k, v in row["variants"].items() if "us" in v}
    errs = [k for k, v in row["variants"].items() if "error" in v]
    best = min(ok, key=lambda k: ok[k]["us"]) if ok else None
    line = f"{row['op']:6s} M={row['M']:<3d} K={row['K']:<5d} N={row['N']:<5d} "
    if best:
        line += f"best {best} {ok[best]['us']:.2f}us ({ok[best]['weight_tbps']:.2f} TB/s)"
    if "default" in ok:
        line += f" default {ok['default']['us']:.2f}"
    if row.get("bf16_linear_us"):
        line += f" | bf16 {row['bf16_linear_us']:.2f} fp8 {row.get('fp8_scaled_mm_us') or 0:.2f}"
        if best:
            line += f" x{row['bf16_linear_us'] / ok[best]['us']:.2f}"
    if errs:
        line += f" ERR {errs}"
    return line


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--budget", type=float, default=70.0)
    p.add_argument("--shapes", default="all")
    p.add_argument("--ms", default=",".join(map(str, MS)))
    p.add_argument("--matvec-ms", default="1,2,4,16,64")
    args = p.parse_args()
    t0 = time.time()
    dev = torch.device("cuda")
    kernel = load_built(Package("flashrt-smallm-gemm"))
    sm = importlib.import_module(f"{kernel.__name__}.smallm")
    ref = reference_of(kernel)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shapes = SHAPES if args.shapes == "all" else [tuple(map(int, s.split("x")))
                                                  for s in args.shapes.split(",")]
    ms = [int(m) for m in args.ms.split(",")]
    mv_ms = [int(m) for m in args.matvec_ms.split(",") if m]
    rows = []
    jobs = [(M, K, N, False) for M in ms for K, N in shapes]
    jobs += [(M, K, N, True) for M in mv_ms for K, N in shapes]
    for M, K, N, a_fp4 in jobs:
        if time.time() - t0 > args.budget:
            print(f"budget reached: skipped {'matvec' if a_fp4 else 'linear'} M={M} {K}x{N}")
            continue
        row = run_row(sm, ref, M, K, N, a_fp4, dev, only_default=a_fp4)
        rows.append(row)
        print(summary(row), flush=True)
        (out / "tune_smallm.json").write_text(json.dumps(
            {"gpu": torch.cuda.get_device_name(0), "rows": rows}, indent=1, default=str))
    print(f"done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
