"""Compile the tl.dot kernel for sm_90 (no GPU needed) and check the layout of its PTX
decode's operands: elements j, j+1 of the last axis must be neighbouring registers of
one thread (the first register basis vector of the layout [0, 0, 1]). The decode is
element-wise, so any layout gives the right values; this one is what lets its bf16x2
outputs be the MMA operand's registers as they are. A load change that makes Triton
anchor another layout here (int32 scale words spread by a reshape did) sends the
dequantized tile through shared memory to reach the MMA layout, a slowdown no
value test sees. The integer arguments a real launch specializes (N, K / 2 and the scale
column groups, multiples of 16 at model shapes) are marked divisible by 16 here too:
without that the loads are laid out differently and the check would test another kernel.

Run as a script (outside the Triton interpreter): ``python ptx_operand_layout.py``;
prints one line per configuration and exits 1 if any breaks the rule."""

import importlib
import re
import sys
from pathlib import Path

from flashrt_tools.offline import compile_sm90

# (BLOCK_M, BLOCK_N, BLOCK_KH, warps, SPLIT, A_FP4, EVEN_K): one per branch of the
# launch rule (16 / 32 / 64-row tiles, 32 / 64 / 128-byte steps, split-K, W4A4, K tail)
CONFIGS = [(16, 64, 64, 4, True, False, True), (32, 64, 64, 4, False, True, False),
           (64, 128, 32, 8, False, True, False), (64, 128, 128, 8, True, False, True)]


def operand_layout(sm, bm, bn, bkh, warps, split, a_fp4, even):
    sig = {"a_ptr": "*u8" if a_fp4 else "*i32", "sfa_ptr": "*u8", "w_ptr": "*u8",
           "sfw_ptr": "*u8", "bias_ptr": "*bf16", "out_ptr": "*bf16", "ws_ptr": "*fp32",
           "lock_ptr": "*i32", "M": "i32", "N": "i32", "KH": "i32", "n_col_super": "i32",
           "steps_per_split": "i32", "n_split": "i32", "out_scale": "fp32", "alpha": "fp32"}
    const = dict(A_FP4=a_fp4, HAS_BIAS=False, SPLIT=split, BLOCK_M=bm, BLOCK_N=bn,
                 BLOCK_KH=bkh, PTX_DECODE=True, EVEN_K=even,
                 SCALE_WORDS=sm.DOT_SCALES == "words", PDL=True, PREFETCH=True, EARLY_RELEASE=True)
    ttgir = compile_sm90(sm._dot_kernel, sig, const, num_warps=warps,
                         aligned=list(range(8)) + [9, 10, 11], num_stages=3).asm["ttgir"]
    enc = re.search(r"tt\.elementwise_inline_asm .*? : tensor<[^>]*, (#\w+)>", ttgir).group(1)
    return re.search(re.escape(enc) + r" = (#ttg\.\w+<\{.*?\}>)", ttgir).group(1)


def main():
    from kernels import get_local_kernel

    kernel = get_local_kernel(Path(__file__).resolve().parents[1])
    sm = importlib.import_module(f"{kernel.__name__}.smallm")
    bad = 0
    for cfg in CONFIGS:
        layout = operand_layout(sm, *cfg)
        m = re.search(r"register = \[(\[[^\]]*\])", layout)
        ok = m is not None and m.group(1).replace(" ", "") == "[0,0,1]"
        bad += not ok
        print("ok " if ok else "BAD", cfg, layout[:100])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
