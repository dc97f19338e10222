"""The math contract of flashrt-nvfp4 in plain PyTorch.

Used by the tests, by `flashrt validate` and as the eager baseline of the
benchmarks. Pure byte permutation: no value is converted.
"""

import torch


def swizzled_offsets(rows, nb, device=None):
    """int64 [rows, nb]: byte offset of logical scale (r, c) in the swizzled buffer."""
    r = torch.arange(rows, device=device, dtype=torch.int64)[:, None]
    c = torch.arange(nb, device=device, dtype=torch.int64)[None, :]
    n_col_super = (nb + 3) // 4
    return (((r // 128) * n_col_super + c // 4) * 512 + (r % 32) * 16
            + ((r % 128) // 32) * 4 + (c % 4))


def nvfp4_sf_swizzled_bytes(rows, D):
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    if D <= 0 or D % 16 != 0:
        raise ValueError(f"D must be positive and divisible by 16, got {D}")
    return -(-rows // 128) * -(-(D // 16) // 4) * 512


def nvfp4_sf_linear_to_swizzled(scales, *, is_sfb=False):
    rows, nb = scales.shape
    out = torch.zeros(nvfp4_sf_swizzled_bytes(rows, nb * 16), dtype=torch.uint8,
                      device=scales.device)
    out[swizzled_offsets(rows, nb, scales.device).flatten()] = scales.flatten()
    return out
