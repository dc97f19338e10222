"""The math contract of flashrt-gemm-epilogues in plain PyTorch (spec gemm-quant.md §0.2, §3).

Used by the tests, by `flashrt validate` and as the eager baseline of the
benchmarks. Quantizers: fp32 math, ``Q8(v, s) = RNE(clamp(v * fp32(1/s), +-448))``
(NaN -> -448), GELU = PyTorch's tanh GELU in fp32. GEMMs: fp64 products and sums
of the BF16 inputs (the exact result, rounded once to fp32), then the epilogue in
fp32 and one BF16 rounding.
"""

import torch

from .fp8_reference import gelu, quantize_fp8


def bias_gelu_quantize_fp8_static_bf16(input, bias, scale):
    return quantize_fp8(gelu(input.float() + bias.float()), scale)


def gelu_quantize_fp8_static_bf16(input, scale):
    return quantize_fp8(gelu(input), scale)


def channel_scale_quantize_fp8_static_bf16(input, channel_scale, scale):
    return quantize_fp8(input.float() * channel_scale.float(), scale)


def matmul_fp32(a, b):
    return (a.double() @ b.double()).float()


def bf16_linear_bf16(x, w):
    return matmul_fp32(x, w).to(torch.bfloat16)


def bf16_linear_bias_bf16(x, w, bias):
    return (matmul_fp32(x, w) + bias.float()).to(torch.bfloat16)


def bf16_gemm_bias(a, b, bias):
    return (matmul_fp32(a, b) + bias.float()).to(torch.bfloat16)


def bf16_gemm_bias_gelu(a, b, bias):
    return gelu(matmul_fp32(a, b) + bias.float()).to(torch.bfloat16)
