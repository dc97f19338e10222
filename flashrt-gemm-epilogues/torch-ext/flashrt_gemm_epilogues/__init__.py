"""flashrt-gemm-epilogues: post-GEMM epilogue helpers.

Memory-bound BF16 -> FP8 E4M3 static-scale quantize epilogues (bias + GELU(tanh),
GELU, per-channel scale) and BF16 GEMMs (b [K, N]) with the bias / bias + GELU
epilogue fused on the fp32 accumulator. Triton kernels; CUDA, or CPU through
the Triton interpreter.
"""

from .epilogues import (bf16_gemm_bias, bf16_gemm_bias_gelu, bf16_linear_bf16,
                        bf16_linear_bias_bf16, bias_gelu_quantize_fp8_static_bf16,
                        channel_scale_quantize_fp8_static_bf16, gelu_quantize_fp8_static_bf16)

__all__ = [
    "bf16_linear_bf16", "bf16_linear_bias_bf16", "bf16_gemm_bias_gelu", "bf16_gemm_bias",
    "bias_gelu_quantize_fp8_static_bf16", "channel_scale_quantize_fp8_static_bf16",
    "gelu_quantize_fp8_static_bf16",
]
