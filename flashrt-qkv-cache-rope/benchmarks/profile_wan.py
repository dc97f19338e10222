"""Nsight Compute driver for the Wan rows' open question: why the whole-hidden kernel
stops at 78-88% of copy bandwidth (H200) while the plain split of the same packed rows
passes 90%. Runs, three calls each, at Wan2.2 T = 2520 (24 heads, D = 3072; ``--heads
40`` for A14B): ``qkv_split_bf16`` (the plain split: the bytes of the bias + V function, no
math), ``qkv_split_norm_rope_bf16`` and ``qkv_split_bias_norm_rope_v_bf16``
under the launch rule. Not yet run.

The 2026-12-04 sweep (``tune_qkv.py --wan``) ruled out occupancy: programs with half the
registers were slower. What the profile should tell apart: DRAM throughput and bytes in
flight (MemoryWorkloadAnalysis), whether warps wait on memory (long scoreboard) or on the
two row reductions' barriers and shared-memory round trips (WarpStateStats), and the
ramp / tail of a 2520-program grid (LaunchStats, Occupancy). Command::

    ncu --clock-control none --kernel-name regex:"_wan_qkv_kernel|_split_kernel" --launch-count 9 \\
        --section SpeedOfLight --section Occupancy --section WarpStateStats \\
        --section LaunchStats --section SchedulerStats --section MemoryWorkloadAnalysis \\
        python3 flashrt-qkv-cache-rope/benchmarks/profile_wan.py
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.repo import ROOT, Package, load_file  # noqa: E402
from flashrt_tools.validation import load_built  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=2520)
    ap.add_argument("--heads", type=int, default=24)
    args = ap.parse_args()
    cases = load_file(ROOT / "flashrt-qkv-cache-rope" / "tests" / "cases.py",
                      "_flashrt_cases_flashrt_qkv_cache_rope")
    kernel = load_built(Package("flashrt-qkv-cache-rope"))
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(0)
    kw = cases.wan_inputs(1, args.tokens, args.heads, 128, dev, gen)
    kw_bias = cases.wan_inputs(1, args.tokens, args.heads, 128, dev, gen, bias=True)
    for _ in range(3):
        kernel.qkv_split_bf16(kw["packed_qkv"], args.heads, 128)
    for _ in range(3):
        kernel.qkv_split_norm_rope_bf16(**kw)
    for _ in range(3):
        kernel.qkv_split_bias_norm_rope_v_bf16(**kw_bias)
    torch.cuda.synchronize()
    print(f"T={args.tokens} heads={args.heads}: 3 calls each of qkv_split_bf16, "
          "qkv_split_norm_rope_bf16, qkv_split_bias_norm_rope_v_bf16")


if __name__ == "__main__":
    main()
