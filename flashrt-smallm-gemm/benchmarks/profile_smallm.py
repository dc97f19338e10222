"""Nsight Compute driver: the launch rule's kernel at M = 4 (K x N = 1024x8192, 2048x16384;
the mma kernel on sm_90 since 2026-12-03, the tl.dot kernel before) and BF16 ``F.linear``
(cuBLAS) on the first shape, three calls each. The profile in
``results/nvidia-h200/tuning/flashrt-smallm-gemm/ncu_dot_m4.2026-12-02.txt`` came from
the command below. ``ncu_mma_m4.2026-12-03.txt`` (a probe form of the mma kernel; the file
says which): the kernel regex ``_nvfp4_mma_kernel``, ``--launch-count 6``, the
SourceCounters section added, the report saved with ``-o`` and its per-instruction stall
samples printed with ``ncu -i <report> --page source --csv --print-source sass``.

    ncu --clock-control none --kernel-name regex:"_dot_kernel|nvjet|gemm" --launch-count 9 \\
        --section SpeedOfLight --section Occupancy --section WarpStateStats \\
        --section LaunchStats --section SchedulerStats --section MemoryWorkloadAnalysis \\
        python3 flashrt-smallm-gemm/benchmarks/profile_smallm.py
"""

import importlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.repo import ROOT, Package, load_file  # noqa: E402
from flashrt_tools.validation import load_built  # noqa: E402


def main():
    tune = load_file(ROOT / "flashrt-smallm-gemm" / "benchmarks" / "tune_smallm.py",
                     "_flashrt_tune_smallm")  # its input sets
    kernel = load_built(Package("flashrt-smallm-gemm"))
    sm = importlib.import_module(f"{kernel.__name__}.smallm")
    dev = torch.device("cuda")
    for K, N in ((1024, 8192), (2048, 16384)):
        x, _, w, s, _ = tune.fp4_sets(4, N, K, dev, 1, False)[0]
        print(K, N, sm.gemm_config(4, N, K // 2, dev))
        for _ in range(3):
            kernel.nvfp4_weight_only_linear_bf16(x, w, s)
        if K == 1024:
            wb = torch.randn(N, K, device=dev).to(torch.bfloat16)
            for _ in range(3):
                F.linear(x, wb)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
