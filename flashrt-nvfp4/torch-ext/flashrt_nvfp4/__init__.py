"""flashrt-nvfp4: NVFP4 layout helpers.

Linear per-16-block UE4M3 scale bytes ``[rows, D/16]`` -> the swizzled 128x4
super-tile layout consumed by block-scaled FP4 GEMMs (and by
flashrt-smallm-gemm), and the size of that buffer. Triton kernel; CUDA, or CPU
through the Triton interpreter.
"""

from .layout import nvfp4_sf_linear_to_swizzled, nvfp4_sf_swizzled_bytes

__all__ = ["nvfp4_sf_linear_to_swizzled", "nvfp4_sf_swizzled_bytes"]
