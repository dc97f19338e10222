"""The math contract of flashrt-nvfp4 in plain PyTorch.

Used by the tests, by `flashrt validate` and as the eager baseline of the
benchmarks. Pure byte permutation: no value is converted.
"""

# swizzled_offsets: the layout map, part of this contract (the tests read it here)
from .nvfp4_reference import swizzle, swizzled_bytes, swizzled_offsets


def nvfp4_sf_swizzled_bytes(rows, D):
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    if D <= 0 or D % 16 != 0:
        raise ValueError(f"D must be positive and divisible by 16, got {D}")
    return swizzled_bytes(rows, D)


def nvfp4_sf_linear_to_swizzled(scales, *, is_sfb=False):
    return swizzle(scales)
