"""flashrt-residual-norm-quant: residual add + RMSNorm / LayerNorm + static FP8 quant.

Runtime glue between FP8 GEMM / FFN blocks: in-place residual add, RMSNorm (or
LayerNorm) and per-tensor FP8 E4M3 quantization of the next layer's input, in
one launch. Triton kernels; CUDA, or CPU through the Triton interpreter.
Kernelize layers (`layers.RMSNorm`, `layers.LayerNorm`) for transformers models.
"""

from . import layers
from .norms import (layer_norm_bf16, residual_add_rms_norm_bf16,
                    residual_add_rms_norm_quant_fp8_static_bf16, rms_norm_bf16,
                    rms_norm_quant_fp8_static_bf16)

__all__ = [
    "layer_norm_bf16", "layers", "residual_add_rms_norm_bf16",
    "residual_add_rms_norm_quant_fp8_static_bf16", "rms_norm_bf16",
    "rms_norm_quant_fp8_static_bf16",
]
