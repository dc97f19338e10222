"""The math contract of flashrt-residual-norm-quant in plain PyTorch (fp32 inside).

Used by the tests, by `flashrt validate` and as the eager baseline of the
benchmarks. Same names and arguments as the public functions, minus the output
buffers; the in-place residual update is returned instead of done in place
(``residual_add_*`` return ``out`` only, like the kernels; ``*_with_residual``
helpers also return the updated residual).
"""

import torch

FP8_MAX = 448.0


def rms_norm_fp32(x, weight, eps):
    """RMSNorm with eps inside the root and the weight used as is (no 1 + w)."""
    x = x.float()
    inv = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return x * inv * weight.float()


def quantize_fp8(v, scale):
    """Static E4M3: clamp(v / scale, ±448), then RNE (torch does not saturate)."""
    return (v.float() / scale.float()).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)


def rms_norm_bf16(x, weight, eps=1e-6):
    return rms_norm_fp32(x, weight, eps).to(torch.bfloat16)


def rms_norm_quant_fp8_static_bf16(x, weight, scale, eps=1e-6):
    return quantize_fp8(rms_norm_fp32(x, weight, eps), scale)


def layer_norm_bf16(x, weight, bias, eps=1e-5):
    x = x.float()
    mean = x.mean(dim=-1, keepdim=True)
    xc = x - mean
    var = (xc * xc).mean(dim=-1, keepdim=True)  # biased
    return (xc * torch.rsqrt(var + eps) * weight.float() + bias.float()).to(torch.bfloat16)


def residual_add_rms_norm_fp32(residual, x, weight, eps):
    """(normalized fp32 value, updated bf16 residual): the RMS comes from the unrounded
    fp32 sum, the value normalized is the rounded residual (spec §3.2)."""
    a = residual.float() + x.float()
    rounded = a.to(torch.bfloat16)
    inv = torch.rsqrt(a.pow(2).mean(dim=-1, keepdim=True) + eps)
    return rounded.float() * inv * weight.float(), rounded


def residual_add_rms_norm_bf16_with_residual(residual, x, weight, eps=1e-6):
    v, rounded = residual_add_rms_norm_fp32(residual, x, weight, eps)
    return v.to(torch.bfloat16), rounded


def residual_add_rms_norm_quant_fp8_static_bf16_with_residual(residual, x, weight, scale,
                                                               eps=1e-6):
    v, rounded = residual_add_rms_norm_fp32(residual, x, weight, eps)
    return quantize_fp8(v, scale), rounded


def residual_add_rms_norm_bf16(residual, x, weight, eps=1e-6):
    return residual_add_rms_norm_bf16_with_residual(residual, x, weight, eps)[0]


def residual_add_rms_norm_quant_fp8_static_bf16(residual, x, weight, scale, eps=1e-6):
    return residual_add_rms_norm_quant_fp8_static_bf16_with_residual(
        residual, x, weight, scale, eps)[0]
