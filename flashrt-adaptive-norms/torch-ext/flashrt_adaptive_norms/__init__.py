"""flashrt-adaptive-norms: AdaLN-style RMSNorm for DiT / VLA / video blocks.

RMSNorm with weight, then per-token (or broadcast) ``·(1 + scale) + shift``
modulation and extraction of the gate chunk; a fused variant first applies a
gated residual update in place and emits static FP8 E4M3. Triton kernels; CUDA,
or CPU through the Triton interpreter.
"""

from .ada_norms import ada_rms_norm_style_bf16, gate_residual_ada_norm_fp8_static_bf16

__all__ = ["ada_rms_norm_style_bf16", "gate_residual_ada_norm_fp8_static_bf16"]
