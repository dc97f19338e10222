"""NVFP4 reference math shared by the NVFP4 packages' reference.py (spec gemm-quant.md
§0.3, §6.2), in plain PyTorch with the kernels' fp32 arithmetic.

* ``swizzled_offsets`` / ``swizzled_bytes``: the 128x4 super-tile scale layout;
* ``ceil_ue4m3`` / ``ue4m3_unsigned`` / ``e2m1_code``: the encode rules;
* ``quantize_nvfp4_rows``: packed E2M1 pairs + linear scale bytes of fp32 rows;
* ``swizzle``: linear scale bytes -> a zero-filled swizzled buffer.

One source of truth: common/nvfp4_reference.py, copied by `flashrt sync` into
flashrt-nvfp4, flashrt-fused-quant and flashrt-smallm-gemm.
"""

import torch


def swizzled_offsets(rows, nb, device=None):
    """int64 [rows, nb]: byte offset of logical scale (r, c) in the swizzled buffer."""
    r = torch.arange(rows, device=device, dtype=torch.int64)[:, None]
    c = torch.arange(nb, device=device, dtype=torch.int64)[None, :]
    n_col_super = (nb + 3) // 4
    return (((r // 128) * n_col_super + c // 4) * 512 + (r % 32) * 16
            + ((r % 128) // 32) * 4 + (c % 4))


def swizzled_bytes(rows, cols):
    """Bytes of the swizzled scale buffer of ``rows`` x ``cols`` FP4 elements."""
    return -(-rows // 128) * -(-(cols // 16) // 4) * 512


def ceil_ue4m3(t):
    """int32 UE4M3 byte of the smallest representable scale >= t (fp32 tensor)."""
    t = t.float()
    bits = t.view(torch.int32)
    ue = ((bits >> 23) & 0xFF) - 127 + 7
    mant = bits & 0x7FFFFF
    m = (mant >> 20) + ((mant & 0xFFFFF) != 0).to(torch.int32)
    carry = m == 8
    m = torch.where(carry, 0, m)
    ue = torch.where(carry, ue + 1, ue)
    e_norm = torch.where(ue >= 15, 0xFE, (ue << 3) | m)
    m_sub = torch.ceil(t * 512.0).nan_to_num(0.0).clamp(0, 64).to(torch.int32)
    e_sub = torch.where(m_sub > 7, 0x08, m_sub.clamp_min(1))
    e = torch.where(ue <= 0, e_sub, e_norm)
    e = torch.where(t > 240.0, 0xFE, e)
    return torch.where(t <= 0.0, 0, e).to(torch.int32)


def ue4m3_unsigned(e):
    """fp32 value of UE4M3 bytes (sign bit ignored)."""
    e = e.to(torch.int32) & 0x7F
    E, m = e >> 3, e & 7
    return torch.where(E == 0, m.float() * 2.0 ** -9, (1.0 + m.float() / 8) * torch.exp2(E.float() - 7))


def e2m1_code(v):
    """E2M1 nibbles: thresholds on |v| (ties away from zero, saturating), sign for v < 0."""
    a = v.abs()
    c = sum((a >= th).to(torch.int32) for th in (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0))
    c = torch.where(torch.isnan(a), 7, c)
    return c | torch.where(v < 0, 8, 0)


def quantize_nvfp4_rows(y):
    """fp32 [R, C] -> (packed uint8 [R, C/2], linear scale bytes uint8 [R, C/16])."""
    R, C = y.shape
    blocks = y.view(R, C // 16, 16)
    amax = blocks.abs().amax(dim=2)
    e = ceil_ue4m3(amax / 6.0)
    s = ue4m3_unsigned(e)
    inv = torch.where(s > 0, 1.0 / s, torch.zeros_like(s))
    codes = e2m1_code((blocks * inv[:, :, None]).view(R, C))
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).to(torch.uint8)
    return packed, e.to(torch.uint8)


def swizzle(linear_scales):
    """Linear scale bytes [rows, nb] -> the swizzled buffer (every other byte zero)."""
    rows, nb = linear_scales.shape
    out = torch.zeros(swizzled_bytes(rows, nb * 16), dtype=torch.uint8,
                      device=linear_scales.device)
    out[swizzled_offsets(rows, nb, linear_scales.device).flatten()] = linear_scales.flatten()
    return out
