"""FP8 GEMM at 41-128 rows: the decode (swap-AB) kernel with a 64 / 128-wide row side over
K splits and K steps, against the launch rule (tile kernel, or the swap kernel where the
weight has few tiles) and torch._scaled_mm. Each candidate checked first (max |err| <= 2%
of the max |fake-quant product|, bit-identical over two calls), then timed under
CUDA-graph replay over L2-rotated weights.

Measured on H200 (2026-12-02 evening, ``results/nvidia-h200/tuning/flashrt-fp8-ffn/
tune_fp8_wide_swap.2026-12-02.json``; us, best swap / rule / _scaled_mm): M = 64
1024 -> 4096 4.46 / 4.62 / 4.39; M = 128 1024 -> 4096 5.73 / 5.41 / 5.09; M = 128
4096 -> 1024 9.05 (4 splits, 256-wide K) / 11.11 / 6.20; M = 64 4096 -> 1024 6.28 / 6.26
/ 6.14; M = 41 1536 -> 6144 6.67 / 6.99 / 5.87; M = 128 1152 -> 4304 6.86 / 7.06 / 5.71.
Not adopted (gains of 3-5% on three shapes, 19% on one, a loss on one; none reaches
_scaled_mm); unlike the BF16 GEMM of flashrt-gemm-epilogues, where the same change
gained 1.3-3.3x.

Run on a GPU: ``python3 flashrt-fp8-ffn/benchmarks/tune_fp8_wide_swap.py --out DIR``
"""
import argparse
import importlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from flashrt_tools.bench.fp8_ffn import BF16, eager_gemm, fp8_weight, q8, scaled_mm  # noqa: E402
from flashrt_tools.bench.harness import (graph_us, rotation_sets, timings_line,  # noqa: E402
                                         verified_timings)
from flashrt_tools.repo import Package  # noqa: E402
from flashrt_tools.validation import load_built  # noqa: E402

SHAPES = ((64, 1024, 4096), (128, 1024, 4096), (128, 4096, 1024), (64, 4096, 1024),
          (41, 1536, 6144), (128, 1152, 4304))


def swap(*c):
    return ("swap",) + c


def candidates(M, K):
    """The swap kernel with a 64 / 128-wide row side over K splits (>= 512 of K each) and
    128 / 256-wide K steps."""
    bm = 64 if M <= 64 else 128
    return [swap(bm, 64, bk, split, -(-K // split // bk) * bk, 4, 4)
            for split in (1, 2, 4, 8) if K // split >= 512 for bk in (128, 256)]


def row(gm, M, K, N):
    g = torch.Generator(device="cuda").manual_seed(0)
    n = rotation_sets(K * N)
    ws = [fp8_weight(N, K, g) for _ in range(n)]
    x = torch.randn(M, K, generator=g, device="cuda").to(BF16)
    sx = (x.float().abs().amax() / 448).reshape(1)
    xq = q8(x, sx)
    c = torch.empty(M, N, dtype=BF16, device="cuda")
    ref = eager_gemm(xq, ws[0][0], sx, ws[0][1]).float()
    rule = gm.gemm_config(M, N, K, xq.device)

    def call(cfg):
        def run(i):  # PDL for the swap kernel, as the package launches it
            gm.launch_with_config(cfg, cfg[0] == "swap", xq, ws[i][0], sx, ws[i][1], c)
            return c
        return run

    def check(got):
        err = ((got.float() - ref).abs().max() / ref.abs().max()).item()
        return None if err <= 2e-2 else f"max error {err:.3g} of the max |product|"

    calls = {"rule": call(rule), **{str(cfg): call(cfg) for cfg in candidates(M, K)}}
    return {"M": M, "K": K, "N": N,
            "scaled_mm_us": graph_us(lambda i: scaled_mm(xq, ws[i][0], sx, ws[i][1]),
                                     list(range(n))),
            "rule": rule, "cands": verified_timings(calls, check, list(range(n)))}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    args = p.parse_args()
    gm = importlib.import_module(load_built(Package("flashrt-fp8-ffn")).__name__ + ".fp8_gemm")
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for M, K, N in SHAPES:
        r = row(gm, M, K, N)
        rows.append(r)
        print(M, K, N, f"_scaled_mm {r['scaled_mm_us']:.2f}", timings_line(r["cands"]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune_fp8_wide_swap.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
