"""The math contract of flashrt-smallm-gemm in plain PyTorch.

Used by the tests, by `flashrt validate` and as the eager baseline of the
benchmarks. The GEMMs dequantize the exact packed tensors (E2M1 x UE4M3
values are exact in fp32), accumulate in float64 and round to bf16 once; the
kernels accumulate in fp32 in another order, so they differ by summation
rounding only. The weight quantizer follows spec gemm-quant.md §6.2 steps 2-7
in fp32 (byte-exact with the kernel).
"""

import torch

E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
               -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def swizzled_offsets(rows, nb, device=None):
    r = torch.arange(rows, device=device, dtype=torch.int64)[:, None]
    c = torch.arange(nb, device=device, dtype=torch.int64)[None, :]
    return ((((r // 128) * ((nb + 3) // 4) + c // 4) * 512) + (r % 32) * 16
            + ((r % 128) // 32) * 4 + (c % 4))


def swizzled_bytes(rows, K):
    return -(-rows // 128) * -(-(K // 16) // 4) * 512


def ue4m3_smallm(e):
    """Scale bytes -> fp32, smallm decode: sign honoured, 0x7F / 0xFF -> 0."""
    e = e.to(torch.int32)
    mag = e & 0x7F
    E, m = mag >> 3, mag & 7
    v = torch.where(E == 0, m.float() * 2.0 ** -9, (1.0 + m.float() / 8) * torch.exp2(E.float() - 7))
    v = torch.where(mag == 0x7F, torch.zeros_like(v), v)
    return torch.where((e & 0x80) != 0, -v, v)


def ue4m3_unsigned(e):
    e = e.to(torch.int32) & 0x7F
    E, m = e >> 3, e & 7
    return torch.where(E == 0, m.float() * 2.0 ** -9, (1.0 + m.float() / 8) * torch.exp2(E.float() - 7))


_LUTS = {}


def _e2m1_lut(device):
    """The E2M1 decode table on ``device``, made once: a host-to-device copy on every
    call would make the reference impossible to capture in a CUDA graph (benchmarks)."""
    if device not in _LUTS:
        _LUTS[device] = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=device)
    return _LUTS[device]


def dequantize(packed, sf, rows, K):
    """fp32 [rows, K] of packed E2M1 bytes [rows, K/2] x swizzled scales (smallm decode)."""
    lut = _e2m1_lut(packed.device)
    packed = packed.reshape(rows, K // 2)
    codes = torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(rows, K).long()
    scale = ue4m3_smallm(sf.flatten()[swizzled_offsets(rows, K // 16, packed.device)])
    return lut[codes] * scale.repeat_interleave(16, dim=1)


def nvfp4_w4a4_decode_matvec_bf16out(a_packed, b_packed, sfa, sfb, *, alpha=1.0):
    N, KH = b_packed.shape
    K = 2 * KH
    M = a_packed.shape[0] if a_packed.dim() == 2 else 1
    a = dequantize(a_packed, sfa, M, K).double()
    b = dequantize(b_packed, sfb, N, K).double()
    y = ((a @ b.t()) * alpha).to(torch.bfloat16)
    return y.reshape(N) if M == 1 else y


def nvfp4_weight_only_linear_bf16(x, w_packed, w_scales, *, alpha=1.0, bias=None):
    N, KH = w_packed.shape
    K = 2 * KH
    w = dequantize(w_packed, w_scales, N, K).double()
    y = (x.reshape(-1, K).double() @ w.t()) * alpha
    if bias is not None:
        y = y + bias.double()
    return y.to(torch.bfloat16).reshape(*x.shape[:-1], N)


def ceil_ue4m3(t):
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


def e2m1_code(v):
    a = v.abs()
    c = sum((a >= th).to(torch.int32) for th in (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0))
    c = torch.where(torch.isnan(a), 7, c)
    return c | torch.where(v < 0, 8, 0)


def nvfp4_quantize_weight_bf16(weight, *, global_scale=1.0):
    N, K = weight.shape
    v = weight.float() * torch.tensor(global_scale, dtype=torch.float32)
    blocks = v.view(N, K // 16, 16)
    e = ceil_ue4m3(blocks.abs().amax(dim=2) / 6.0)
    s = ue4m3_unsigned(e)
    inv = torch.where(s > 0, 1.0 / s, torch.zeros_like(s))
    codes = e2m1_code((blocks * inv[:, :, None]).view(N, K))
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).to(torch.uint8)
    scales = torch.zeros(swizzled_bytes(N, K), dtype=torch.uint8, device=weight.device)
    scales[swizzled_offsets(N, K // 16, weight.device).flatten()] = e.to(torch.uint8).flatten()
    return packed, scales
