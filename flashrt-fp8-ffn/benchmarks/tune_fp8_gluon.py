"""The warp-specialized Gluon FP8 GEMM (fp8_wgmma.py) against the Triton TMA kernel on
the same 128 x 128 tile and torch._scaled_mm: the record behind ``fp8_wgmma.IN_RULE``.

Per shape: each candidate's output against an fp64 reference of the same FP8 operands
(relative L2, share of outputs off the correctly rounded bf16) and its bits against the
Triton kernel's, then the time under CUDA-graph replay over L2-rotated operand sets
(harness.graph_us). Candidates: ``scaled_mm``; ``triton_rule`` (the rule without the
Gluon kernel: Triton kernels, tiles weighed by their rates); ``package`` (the package's
launch: the Gluon kernel where the rule gives it 128 x 128 tiles; its bits are checked
against ``triton_rule``); ``triton_128`` and ``gluon_128_s<slots>`` (the TMA tile forced
to 128 x 128, the Triton kernel and the Gluon kernel with that many ring slots; bits
checked against ``triton_128``).

H200 records of the prototype forms (results/nvidia-h200/tuning/flashrt-fp8-ffn/
probe_gluon.2026-12-02.run{1,2,3}.json, us; every Gluon form gave the Triton kernel's
bits on every shape):
* run1, one partition (8 warps issue loads and wgmma; promotion of the first of two
  blocks overlapped with the second's wgmma): 1.3-1.6x slower than the rule. Its SASS
  has CTA barriers around every TMA issue and mbarrier wait.
* run2, a producer warp + one 8-warp consumer partition (both warp groups released
  together): 8192^3 1196 vs rule 1188; M = 4096 up 43.5 vs 48.0; encoder down
  (560, 16384 -> 2048) 64.9 vs 72.8.
* run3, a producer warp + two 4-warp consumers, one per 64-row half, released
  independently (the form in fp8_wgmma.py): 8192^3 1155 vs 1224 (_scaled_mm 890);
  M = 4096 up 39.5 vs 48.7 (34.9), down 34.8 vs 40.5 (27.3); encoder down 59.0 vs 71.9
  (33.8); M = 512 / 1024 up 8.37 / 12.9 vs 9.00 / 14.0; 128 x 64 tiles lose
  (down projections at M = 512-1024, 15.5 vs 11.8).

Run: python3 flashrt-fp8-ffn/benchmarks/tune_fp8_gluon.py --out DIR [--budget S]
"""

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench.fp8_ffn import BF16, gemm_operand_sets  # noqa: E402
from flashrt_tools.bench.harness import graph_us, rotation_sets  # noqa: E402
from flashrt_tools.repo import Package  # noqa: E402
from flashrt_tools.tolerance import error_vs_fp64, fp8_product_fp64  # noqa: E402
from flashrt_tools.validation import load_built  # noqa: E402

# (M, K, N): 8192^3, PI0.5 decoder, SigLIP, encoder GeGLU down / merged gate-up
SHAPES = [(8192, 8192, 8192), (512, 1024, 4096), (1024, 1024, 4096), (4096, 1024, 4096),
          (512, 4096, 1024), (1024, 4096, 1024), (4096, 4096, 1024), (512, 1152, 4304),
          (512, 4304, 1152), (560, 16384, 2048), (256, 1024, 4096), (4096, 2048, 32768)]
TILE = ("tma", 128, 128, 128, 8, 8, 4, 3)
STAGE_SWEEP = (3, 4, 5, 6)  # ring slots of the Gluon kernel (6 x 32 KB fits 227 KB)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=300.0)
    args = ap.parse_args()
    start = time.time()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    kernel = load_built(Package("flashrt-fp8-ffn"))
    gemm = importlib.import_module(kernel.__name__ + ".fp8_gemm")
    ws = importlib.import_module(kernel.__name__ + ".fp8_wgmma")
    device = torch.device("cuda")
    sms = gemm._sm_count(device)
    rows = []
    print(f"GPU {torch.cuda.get_device_name()}", flush=True)
    for M, K, N in SHAPES:
        if time.time() - start > args.budget:
            print(f"budget: skip M={M},K={K},N={N}", flush=True)
            continue
        sets = gemm_operand_sets(M, K, N, min(rotation_sets(M * K + N * K + 2 * M * N), 8))
        x, w, sx, sw, _ = sets[0]
        ref64 = fp8_product_fp64(x, w, sx, sw)
        rule = gemm.gemm_config(M, N, K, device)
        # the rule without the Gluon kernel: Triton TMA tiles weighed by Triton's rates
        triton_rule = ("tma",) + gemm.tma_tile(M, N, sms) if rule[0] == "tma" else rule

        def triton(cfg):
            def call(s):
                gemm.launch_with_config(cfg, False, *s, force_triton=True)
                return s[4]
            return call

        def package(s):
            gemm.launch_with_config(rule, False, *s)
            return s[4]

        def gluon(stages):
            def call(s):
                ws.launch(s[0], s[1], s[2], s[3], s[4], s[2], s[2], s[4], gemm.EPI_NONE, sms,
                          stages=stages)
                return s[4]
            return call

        cands = {"scaled_mm": lambda s: torch._scaled_mm(s[0], s[1].t(), scale_a=s[2],
                                                         scale_b=s[3], out_dtype=BF16),
                 "triton_rule": triton(triton_rule), "package": package,
                 "triton_128": triton(TILE)}
        cands.update({f"gluon_128_s{st}": gluon(st) for st in STAGE_SWEEP})
        outs = {}
        for name, fn in cands.items():
            out = fn(sets[0]).clone()
            outs[name] = out
            ref = "triton_rule" if name == "package" else "triton_128"
            eq = bool(torch.equal(out, outs[ref])) if name.startswith(("gluon", "package")) else None
            rel_l2, off = error_vs_fp64(out, ref64)
            row = {"shape": f"M={M},K={K},N={N}", "cand": name, "rule": list(rule),
                   "triton_rule": list(triton_rule), "us": graph_us(fn, sets),
                   "rel_l2": rel_l2, "not_rounded": off, "bits_eq": eq}
            rows.append(row)
            print(f"{row['shape']:24s} {name:12s} {row['us']:9.2f} us relL2 {rel_l2:.2e} "
                  f"off {off:.4f} eq {eq}", flush=True)
        outs = None
        sets = ref64 = None
        torch.cuda.empty_cache()
        (out_dir / "tune_fp8_gluon.json").write_text(json.dumps(
            {"gpu": torch.cuda.get_device_name(), "rows": rows}, indent=1))
    print(f"done in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
