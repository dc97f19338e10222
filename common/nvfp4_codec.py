"""NVFP4 encode/decode helpers shared by the NVFP4 packages (spec gemm-quant.md §0.3, §6.2).

Triton device functions, inlined into the calling kernels:

* ``swizzled_offset``: byte offset of logical scale (r, c) in the 128x4 super-tile
  layout: ``((r // 128) * n_col_super + c // 4) * 512 + (r % 32) * 16
  + ((r % 128) // 32) * 4 + c % 4``.
* ``ceil_ue4m3``: the UE4M3 scale byte of an encode (round up; > 240 -> 0xFE).
* ``ue4m3_unsigned``: fp32 value of a scale byte, sign bit ignored.
* ``e2m1_code``: the E2M1 nibble of a value (ties away from zero, saturating).
* ``encode_blocks``: one NVFP4 block encode (scale byte from amax / 6, packed pairs).

Host: ``bf16_words`` (a bf16 tensor as the int32 words of its element pairs, how
the encoders load two values per lane).

One source of truth: common/nvfp4_codec.py, copied by `flashrt sync` into
flashrt-nvfp4, flashrt-fused-quant and flashrt-smallm-gemm (packages cannot
import each other).
"""

import os

import torch
import triton
import triton.language as tl

# The interpreter cannot run inline PTX: there e2m1_code takes the threshold form
# (same codes; tests check both against reference.py).
_E2M1_FROM_BITS = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") != "1")


@triton.jit
def swizzled_offset(r, c, n_col_super):
    """Swizzled 128x4 super-tile byte offset of logical scale (r, c) (spec §0.3)."""
    return (((r // 128) * n_col_super + c // 4) * 512 + (r % 32) * 16
            + ((r % 128) // 32) * 4 + (c % 4))


@triton.jit
def ceil_ue4m3(t):
    """UE4M3 byte of the smallest representable scale >= t (spec §6.2 step 3), int32."""
    bits = t.to(tl.int32, bitcast=True)
    ue = ((bits >> 23) & 0xFF) - 127 + 7
    mant = bits & 0x7FFFFF
    m = (mant >> 20) + ((mant & 0xFFFFF) != 0).to(tl.int32)
    carry = m == 8
    m = tl.where(carry, 0, m)
    ue = tl.where(carry, ue + 1, ue)
    e_norm = tl.where(ue >= 15, 0xFE, (ue << 3) | m)
    # ue <= 0: t < 2^-6 (fp32 subnormals included); t * 512 is exact
    m_sub = tl.math.ceil(t * 512.0).to(tl.int32)
    e_sub = tl.where(m_sub > 7, 0x08, tl.maximum(m_sub, 1))
    e = tl.where(ue <= 0, e_sub, e_norm)
    e = tl.where(t > 240.0, 0xFE, e)
    return tl.where(t <= 0.0, 0, e)  # NaN: not <= 0, not > 240, ue >= 15 -> 0xFE


@triton.jit
def ue4m3_unsigned(e):
    """fp32 value of a UE4M3 byte (int32), sign bit ignored."""
    e = e & 0x7F
    E = e >> 3
    m = e & 7
    normal = (((E + 120) << 23) | (m << 20)).to(tl.float32, bitcast=True)
    return tl.where(E == 0, m.to(tl.float32) * 0.001953125, normal)


@triton.jit
def e2m1_code(v):
    """E2M1 nibble of fp32 v: ties away from zero, saturate at 6, sign bit 0x8 for
    v < 0 (an exact -0.0 gives 0x0), NaN -> 7.

    GPU form: |v| * 2^-126 rounded toward zero maps E2M1's grid onto fp32's
    subnormal / smallest-normal grid, so bits >> 22 is the code of |v| rounded down
    (0.5 -> 1, 1 -> 2, 1.5 -> 3, 2 -> 4, 3 -> 5, 4 -> 6, 6 -> 7); adding half a step
    (0x200000) first rounds ties away from zero. The bits are clamped at code 7's
    (0x01C00000) before that add, so that >= 5, inf and NaN saturate to 7 (the product
    of a NaN is PTX's canonical 0x7FFFFFFF, which the add would overflow to a negative
    code: NaN encoded as 0 before this clamp).
    Three instructions instead of seven compares: the encoders are issue-bound
    (measured on H200, SiLU*up -> NVFP4 at 2520 x 12288: 78.3 -> 56.1 us)."""
    if _E2M1_FROM_BITS:
        bits = tl.inline_asm_elementwise("mul.rz.f32 $0, $1, 0f00800000;", "=r,f",
                                         [tl.abs(v)], dtype=tl.int32, is_pure=True, pack=1)
        c = (tl.minimum(bits, 0x01C00000) + 0x200000) >> 22
    else:
        a = tl.abs(v)
        c = ((a >= 0.25).to(tl.int32) + (a >= 0.75).to(tl.int32) + (a >= 1.25).to(tl.int32)
             + (a >= 1.75).to(tl.int32) + (a >= 2.5).to(tl.int32) + (a >= 3.5).to(tl.int32)
             + (a >= 5.0).to(tl.int32))
        c = tl.where(a != a, 7, c)
    return c | tl.where(v < 0.0, 8, 0)


@triton.jit
def encode_blocks(v_lo, v_hi):
    """NVFP4 encode of 16-element blocks held as 8 (lo, hi) pairs on the last axis:
    returns (packed bytes, lo nibble = even element; the int32 UE4M3 scale byte per
    block). Scale = ceil_ue4m3(amax / 6); values are coded as v * (1 / scale)."""
    amax = tl.max(tl.maximum(tl.abs(v_lo), tl.abs(v_hi)), 2)
    e = ceil_ue4m3(tl.div_rn(amax, 6.0))
    s = ue4m3_unsigned(e)
    inv = tl.where(s > 0.0, tl.div_rn(1.0, tl.where(s > 0.0, s, 1.0)), 0.0)[:, :, None]
    return e2m1_code(v_lo * inv) | (e2m1_code(v_hi * inv) << 4), e


def bf16_words(t, name):
    """bf16 tensor -> int32 view of its element pairs (needs 4-byte aligned storage)."""
    if t.storage_offset() % 2 != 0 or t.data_ptr() % 4 != 0:
        raise RuntimeError(f"{name} must be 4-byte aligned (even storage offset)")
    return t.view(torch.int32)
