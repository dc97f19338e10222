"""17-64 row BF16 GEMMs: the swap-AB kernel with a 32 / 64-wide row side against the tile
kernel (how ``_wide_swap_config`` was chosen).

For each (M, K, N): the launch rule, candidate configuration tuples of
``bf16_gemm.launch_bf16_gemm`` and cuBLAS ``torch.mm`` on the same [K, N] weight. Every
candidate is checked first (max |err| <= 1% of the max |exact product|, bit-identical
over two calls), then timed under CUDA-graph replay over L2-rotated weights (distinct
weights per call). ``--run 1``: the losing bench rows (M = 64 4096x4096, SigLIP 512 x
1152 -> 4304, 1024 x 2048 -> 8192) over tile and swap shapes; ``--run 2``: the swap
kernel at 64-column tiles over K splits and K steps on decode-adjacent shapes.

Measured on H200 (2026-12-02 evening; records
``results/nvidia-h200/tuning/flashrt-gemm-epilogues/tune_wide_swap.2026-12-02.run{1,2}.json``;
us, best swap / the tile rule then / cuBLAS): M = 64 4096x4096 12.8 / 21.5 / 11.5,
4096 -> 1024 8.1 (4 splits) / 18.7 / 7.3, 16384 -> 2048 21.8 (4 splits) / 72.8 / 22.6,
1024 -> 4096 5.1 / 7.0 / 5.1, 1152 -> 4304 5.9 / 10.2 / 5.9, 2048 -> 16384 21.3 / 20.9 /
19.2 (256 tiles: the tile rule stays); M = 41 1536 -> 6144 7.6 / 11.8 / 8.2; M = 48
2048 -> 2560 7.4 / 11.6 / 6.5; M = 32 4096x4096 11.7 (256-wide K) / 21.1 / 13.9. 64 rows
x 256-wide K steps do not fit shared memory. At M = 512 / 1024 no tile beat the rule
(best 15.2 against 15.4, 53.6 rule).

Run on a GPU: ``python3 flashrt-gemm-epilogues/benchmarks/tune_wide_swap.py --out DIR
[--run 1|2]``; writes DIR/tune_wide_swap.json, prints one line per shape.
"""

import argparse
import importlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench.harness import (graph_us, rotation_sets, timings_line,  # noqa: E402
                                         verified_timings)
from flashrt_tools.repo import Package  # noqa: E402
from flashrt_tools.validation import load_built  # noqa: E402


def tile(*c):
    return ("tile",) + c


def swap(*c):
    return ("swap",) + c


RUN1 = {
    (64, 4096, 4096): [swap(64, 64, 128, 1, 4096, 4, 4), swap(64, 64, 128, 2, 2048, 4, 4),
                       swap(64, 32, 128, 1, 4096, 4, 4), swap(64, 32, 256, 1, 4096, 4, 3),
                       swap(32, 32, 128, 1, 4096, 4, 4), tile(64, 64, 64, 8, 4, 4),
                       tile(64, 64, 128, 8, 4, 3), tile(32, 64, 128, 8, 4, 4),
                       tile(64, 32, 128, 8, 4, 4), tile(32, 32, 128, 8, 4, 4),
                       tile(32, 32, 64, 8, 4, 6), tile(64, 32, 64, 8, 4, 5)],
    (512, 1152, 4304): [tile(128, 128, 64, 8, 8, 4), tile(128, 256, 64, 8, 8, 3),
                        tile(64, 128, 64, 8, 4, 4), tile(128, 64, 64, 8, 4, 4),
                        tile(128, 128, 128, 8, 8, 3), tile(64, 256, 64, 8, 8, 3),
                        tile(64, 128, 128, 8, 4, 3)],
    (1024, 2048, 8192): [tile(128, 256, 64, 8, 8, 3), tile(128, 128, 64, 8, 8, 4),
                         tile(128, 128, 128, 8, 8, 3), tile(256, 128, 64, 8, 8, 3)],
}
RUN2_SHAPES = [(64, 1024, 4096), (64, 4096, 1024), (32, 4096, 4096), (64, 2048, 16384),
               (64, 16384, 2048), (41, 1536, 6144), (64, 1152, 4304), (64, 4096, 4096),
               (48, 2048, 2560)]


def swaps(M, K, N):
    """64-column swap tiles over K splits (>= 512 of K each) and 128 / 256-wide K steps."""
    bm = 32 if M <= 32 else 64
    out = []
    for split in (1, 2, 4, 8):
        if K // split < 512:
            continue
        for bk in (128, 256):
            out.append(swap(bm, 64, bk, split, -(-K // split // bk) * bk, 4, 4))
    return out


def row(gemm, M, K, N, cands, dev):
    n = rotation_sets(2 * K * N)
    ws = [torch.randn(K, N, device=dev).to(torch.bfloat16) for _ in range(n)]
    a = torch.randn(M, K, device=dev).to(torch.bfloat16)
    out = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
    ref = a.float() @ ws[0].float()

    def call(cfg):
        def run(i):
            gemm.launch_bf16_gemm(a, ws[i], None, out, 0, cfg)
            return out
        return run

    def check(got):
        err = ((got.float() - ref).abs().max() / ref.abs().max()).item()
        return None if err <= 1e-2 else f"max error {err:.3g} of the max |product|"

    calls = {"rule" if c is None else str(c): call(c) for c in [None] + cands}
    return {"M": M, "K": K, "N": N,
            "cublas_us": graph_us(lambda i: torch.mm(a, ws[i]), list(range(n))),
            "rule": gemm.gemm_config(M, N, K, dev),
            "cands": verified_timings(calls, check, list(range(n)))}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--run", type=int, choices=(1, 2), default=2)
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    gemm = importlib.import_module(load_built(Package("flashrt-gemm-epilogues")).__name__
                                   + ".bf16_gemm")
    dev = torch.device("cuda")
    grid = RUN1 if args.run == 1 else {s: swaps(*s) for s in RUN2_SHAPES}
    rows = []
    for (M, K, N), cands in grid.items():
        r = row(gemm, M, K, N, cands, dev)
        rows.append(r)
        print(M, K, N, f"cublas {r['cublas_us']:.2f}", timings_line(r["cands"]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune_wide_swap.json").write_text(json.dumps(
        {"gpu": torch.cuda.get_device_name(0), "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
