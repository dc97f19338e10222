"""The math contract of flashrt-smallm-gemm in plain PyTorch.

Used by the tests, by `flashrt validate` and as the eager baseline of the
benchmarks. The GEMMs dequantize the exact packed tensors (E2M1 x UE4M3
values are exact in fp32), accumulate in float64 and round to bf16 once; the
kernels accumulate in fp32 in another order, so they differ by summation
rounding only. The weight quantizer follows spec gemm-quant.md §6.2 steps 2-7
in fp32 (byte-exact with the kernel).
"""

import torch

from .nvfp4_reference import quantize_nvfp4_rows, swizzle, swizzled_offsets

E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
               -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def ue4m3_smallm(e):
    """Scale bytes -> fp32, smallm decode: sign honoured, 0x7F / 0xFF -> 0."""
    e = e.to(torch.int32)
    mag = e & 0x7F
    E, m = mag >> 3, mag & 7
    v = torch.where(E == 0, m.float() * 2.0 ** -9, (1.0 + m.float() / 8) * torch.exp2(E.float() - 7))
    v = torch.where(mag == 0x7F, torch.zeros_like(v), v)
    return torch.where((e & 0x80) != 0, -v, v)


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


def nvfp4_quantize_weight_bf16(weight, *, global_scale=1.0):
    v = weight.float() * torch.tensor(global_scale, dtype=torch.float32)
    packed, scales = quantize_nvfp4_rows(v)
    return packed, swizzle(scales)
