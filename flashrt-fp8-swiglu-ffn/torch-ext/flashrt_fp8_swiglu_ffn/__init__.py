"""flashrt-fp8-swiglu-ffn: static-scale FP8 E4M3 gated FFN (SwiGLU / GeGLU, no biases).

One Triton FP8 GEMM over the merged [gate; up] weight with the gated product
and the FP8 requantization fused in its epilogue, then the FP8 down GEMM;
BF16-entry variants quantize the input in the same call. CUDA, or CPU through
the Triton interpreter.
"""

from .fp8_gemm import fp8_gemm_bf16
from .swiglu import (bf16_fp8_geglu_mlp_bf16, bf16_fp8_swiglu_mlp_bf16, fp8_geglu_mlp_bf16,
                     fp8_swiglu_mlp_bf16, gelu_mul_merged_quantize_fp8_static_bf16,
                     silu_mul_merged_quantize_fp8_static_bf16)

__all__ = [
    "fp8_gemm_bf16", "fp8_swiglu_mlp_bf16", "fp8_geglu_mlp_bf16", "bf16_fp8_swiglu_mlp_bf16",
    "bf16_fp8_geglu_mlp_bf16", "silu_mul_merged_quantize_fp8_static_bf16",
    "gelu_mul_merged_quantize_fp8_static_bf16",
]
