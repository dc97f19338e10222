"""The math contract of flashrt-adaptive-norms in plain PyTorch (fp32 inside).

Used by the tests, by `flashrt validate` and as the eager baseline of the
benchmarks. Same names and arguments as the public functions minus the output
buffers; the residual update is returned, not done in place.
"""

import torch

FP8_MAX = 448.0


def rms_norm_fp32(x, weight, eps):
    x = x.float()
    inv = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return x * inv * weight.float()


def modulate(n, style):
    """n·(1 + scale) + shift with style = [scale | shift | gate] rows (1 row broadcasts)."""
    D = n.shape[-1]
    st = style.float()
    return n * (1.0 + st[:, :D]) + st[:, D:2 * D]


def gate_chunk(style, rows):
    D = style.shape[1] // 3
    return style[:, 2 * D:].expand(rows, D).contiguous()


def quantize_fp8(v, scale):
    return (v.float() / scale.float()).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)


def ada_rms_norm_style_bf16(x, weight, style, eps=1e-6):
    out = modulate(rms_norm_fp32(x, weight, eps), style).to(torch.bfloat16)
    return out, gate_chunk(style, x.shape[0])


def gate_residual_ada_norm_fp8_static_bf16(residual, x, gate, weight, style, scale, eps=1e-6):
    updated = (residual.float() + x.float() * gate.float()).to(torch.bfloat16)
    v = modulate(rms_norm_fp32(updated, weight, eps), style)  # RMS of the rounded residual
    return updated, quantize_fp8(v, scale), gate_chunk(style, residual.shape[0])
