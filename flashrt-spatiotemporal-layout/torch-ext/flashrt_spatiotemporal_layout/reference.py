"""The math contract of flashrt-spatiotemporal-layout in plain PyTorch (fp32 inside).

Used by the tests, by `flashrt validate` and as the eager baseline of the
benchmarks. Same names and signatures as the public functions, minus the
output buffers; every function returns new tensors (``add_bias_ncdhw_bf16``
included: the kernel works in place, the reference does not).
Layout ops are pure index maps (bit copies). Arithmetic: fp32, one bf16 / fp8
rounding at the end; FP8 = clamp(v * fp32(1/scale), +-448) then RNE.
"""

import torch

FP8_MAX = 448.0


def ncdhw_to_blc_bf16(x):
    B, C, T, H, W = x.shape
    return x.permute(0, 2, 3, 4, 1).reshape(B, T * H * W, C).contiguous()


def patch_im2col_bf16(x):
    nv = x.shape[0]
    return x.reshape(nv, 16, 14, 16, 14, 3).permute(0, 1, 3, 2, 4, 5).reshape(nv * 256, 588)


def time_unshuffle2_bf16(x):
    B, C2, T, H, W = x.shape
    C = C2 // 2
    out = x.new_empty(B, C, 2 * T, H, W)
    out[:, :, 0::2] = x[:, :C]
    out[:, :, 1::2] = x[:, C:]
    return out


def add_bias_ncdhw_bf16(x, bias):
    return (x.float() + bias.float()[None, :, None, None, None]).to(torch.bfloat16)


def update_cache2_ncdhw_bf16(cur, prev):
    if cur.shape[2] >= 2:
        return cur[:, :, -2:].clone()
    return torch.cat([prev[:, :, 1:2], cur[:, :, 0:1]], dim=2)


def channel_to_space3d_bf16(x, out_channels, temporal_factor, spatial_factor, repeats=1,
                            first_chunk=False):
    """Expanded channel e = oc*tf*sf^2 + (dt*sf + dh)*sf + dw reads input channel e // repeats."""
    B, cin, T, H, W = x.shape
    tf, sf, co = temporal_factor, spatial_factor, out_channels
    e = x.repeat_interleave(repeats, dim=1)[:, : co * tf * sf * sf]
    e = e.reshape(B, co, tf, sf, sf, T, H, W).permute(0, 1, 5, 2, 6, 3, 7, 4)
    out = e.reshape(B, co, T * tf, H * sf, W * sf)
    return out[:, :, tf - 1:].contiguous() if first_chunk else out.contiguous()


def pack_causal_cache3_nhwc_bf16(previous, current):
    return torch.cat([previous[:, :, 0], previous[:, :, 1], current[:, :, 0]],
                     dim=1).permute(0, 2, 3, 1).contiguous()


def avg_pool3d_channels_bf16(x, out_channels, factor_t, factor_s, group_size):
    """Zero frames in front, space/time-to-depth, then an fp32 sum of each group of
    ``group_size`` expanded channels in order (from +0), divided by group_size."""
    B, C, T, H, W = x.shape
    ft, fs, g = factor_t, factor_s, group_size
    pad = (-T) % ft
    xp = torch.nn.functional.pad(x.float(), (0, 0, 0, 0, pad, 0))
    to, ho, wo = (T + pad) // ft, H // fs, W // fs
    e = xp.reshape(B, C, to, ft, ho, fs, wo, fs).permute(0, 1, 3, 5, 7, 2, 4, 6)
    e = e.reshape(B, out_channels, g, to, ho, wo)
    acc = torch.zeros(B, out_channels, to, ho, wo, dtype=torch.float32, device=x.device)
    for i in range(g):
        acc = acc + e[:, :, i]
    # divided by a tensor: CUDA's division by a Python scalar multiplies by its fp32
    # reciprocal, which rounds differently for a group of 3, 5, 6 or 7
    return (acc / torch.full_like(acc, g)).to(torch.bfloat16)


def ndhwc_to_ncdhw_bf16(x):
    return x.permute(0, 4, 1, 2, 3).contiguous()


def ndhwc_to_ncdhw_bias_bf16(x, bias):
    y = x.float() + bias.float()
    return y.permute(0, 4, 1, 2, 3).to(torch.bfloat16).contiguous()


def ndhwc_to_ncdhw_add_bf16(x, residual):
    return (x.float().permute(0, 4, 1, 2, 3) + residual.float()).to(torch.bfloat16).contiguous()


def fp32_reciprocal(scale):
    """fp32(1 / fp32(scale)), as a 0-dim fp32 tensor."""
    return torch.tensor(1.0, dtype=torch.float32) / torch.tensor(scale, dtype=torch.float32)


def quantize_fp8_static(v, scale):
    # A 0-dim CPU tensor enters a CUDA op as a scalar (no host-to-device copy), so
    # the reference can be captured in a CUDA graph (benchmarks).
    inv = fp32_reciprocal(scale)
    return (v.float() * inv).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)


def ncdhw_quantize_fp8_static_ndhwc_bf16(x, scale):
    return quantize_fp8_static(x, scale).permute(0, 2, 3, 4, 1).contiguous()


def upsample2x_quantize_fp8_static_nhwc_bf16(x, scale):
    up = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest 2x
    return quantize_fp8_static(up, scale).permute(0, 2, 3, 1).contiguous()
