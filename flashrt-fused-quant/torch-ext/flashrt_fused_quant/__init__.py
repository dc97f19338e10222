"""flashrt-fused-quant: SwiGLU product fused with NVFP4 activation quantization.

BF16 ``gate``, ``up`` -> ``SiLU(gate) * up`` -> per-16 block amax -> UE4M3
(round-up) scale -> packed E2M1 bytes + swizzled scale buffer, in one launch:
the producer for a following NVFP4 down projection. Triton; CUDA, or CPU
through the Triton interpreter.
"""

from .quant import (nvfp4_swizzled_scale_bytes, silu_mul_merged_quant_nvfp4_swizzled_bf16,
                    silu_mul_quant_nvfp4_swizzled_bf16)

__all__ = ["nvfp4_swizzled_scale_bytes", "silu_mul_quant_nvfp4_swizzled_bf16",
           "silu_mul_merged_quant_nvfp4_swizzled_bf16"]
