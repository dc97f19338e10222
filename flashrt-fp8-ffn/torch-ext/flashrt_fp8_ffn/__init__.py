"""flashrt-fp8-ffn: static-scale FP8 E4M3 GEMM and FFN building blocks.

One Triton FP8 GEMM (weights [N, K], fp32 accumulation) with fused epilogues:
bias, GELU(tanh), static FP8 requantization, BF16 out; GELU-MLP stacks (v1/v2
bias tails) and BF16-entry variants that quantize the input in the same call.
CUDA, or CPU through the Triton interpreter.
"""

from .ffn import (bf16_fp8_gelu_mlp_bf16, bf16_fp8_gelu_mlp_v2_bf16, bf16_fp8_linear_bias_bf16,
                  fp8_gelu_mlp_bf16, fp8_gelu_mlp_v2_bf16, fp8_linear_bias_bf16,
                  fp8_linear_bias_gelu_quant_bf16)
from .fp8_gemm import fp8_gemm_bf16

__all__ = [
    "fp8_gemm_bf16", "fp8_linear_bias_bf16", "fp8_linear_bias_gelu_quant_bf16",
    "fp8_gelu_mlp_bf16", "fp8_gelu_mlp_v2_bf16", "bf16_fp8_linear_bias_bf16",
    "bf16_fp8_gelu_mlp_bf16", "bf16_fp8_gelu_mlp_v2_bf16",
]
