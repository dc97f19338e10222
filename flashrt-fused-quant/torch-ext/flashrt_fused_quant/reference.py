"""The math contract of flashrt-fused-quant in plain PyTorch (fp32 inside).

Used by the tests, by `flashrt validate` and as the eager baseline of the
benchmarks. Follows spec gemm-quant.md §6.2 steps 1-7 with fp32 arithmetic
(the kernel's), divisions correctly rounded.
"""

import torch

# swizzled_offsets: the layout map, part of this contract (the tests read it here)
from .nvfp4_reference import quantize_nvfp4_rows, swizzle, swizzled_bytes, swizzled_offsets


def nvfp4_swizzled_scale_bytes(rows, cols):
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    if cols <= 0 or cols % 16 != 0:
        raise ValueError(f"cols must be positive and divisible by 16, got {cols}")
    return swizzled_bytes(rows, cols)


def silu_mul_bf16(gate, up):
    g = gate.float()
    s = (g / (1.0 + torch.exp(-g))).to(torch.bfloat16).float()
    return (s * up.float()).to(torch.bfloat16).float()


def silu_mul_quant_nvfp4_swizzled_bf16(gate, up):
    packed, sf = quantize_nvfp4_rows(silu_mul_bf16(gate, up))
    return packed, swizzle(sf)


def silu_mul_merged_quant_nvfp4_swizzled_bf16(merged_gate_up):
    C = merged_gate_up.shape[1] // 2
    return silu_mul_quant_nvfp4_swizzled_bf16(merged_gate_up[:, :C], merged_gate_up[:, C:])
