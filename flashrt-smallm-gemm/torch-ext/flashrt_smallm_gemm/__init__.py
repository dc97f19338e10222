"""flashrt-smallm-gemm: small-M NVFP4 GEMMs with BF16 output.

* ``nvfp4_w4a4_decode_matvec_bf16out``  NVFP4 activations x NVFP4 weights (the seed's op,
  extended to any K % 16 == 0 and M = 1..64)
* ``nvfp4_weight_only_linear_bf16``     BF16 activations x NVFP4 weights (extension)
* ``nvfp4_quantize_weight_bf16``        BF16 nn.Linear weight -> packed E2M1 + swizzled
  UE4M3 scales (extension)

Hopper has no FP4 tensor cores: weights are dequantized exactly in registers
(E2M1 x UE4M3 fits BF16) and multiplied with fp32 FMAs (decode rows) or
``tl.dot`` (more rows), fp32 accumulate.
Triton; CUDA, or CPU through the Triton interpreter.
"""

from .smallm import (nvfp4_quantize_weight_bf16, nvfp4_w4a4_decode_matvec_bf16out,
                     nvfp4_weight_only_linear_bf16)

__all__ = ["nvfp4_w4a4_decode_matvec_bf16out", "nvfp4_weight_only_linear_bf16",
           "nvfp4_quantize_weight_bf16"]
