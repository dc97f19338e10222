"""The math contract of flashrt-vla-video in plain PyTorch (fp32 inside).

Used by the tests, by `flashrt validate` and as the eager baseline of the
benchmarks. Outputs are rounded to bf16 once, at the end, like the kernels.
"""

import torch


def rms_norm_fp32(x, weight, eps, dims=(-1,)):
    """RMSNorm with eps inside the root and the weight used as is (no 1 + w)."""
    x = x.float()
    inv = torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)
    return x * inv * weight.float()


def rope_rotate_half(n, cos, sin):
    half = n.shape[-1] // 2
    lo, hi = n[..., :half], n[..., half:]
    c, s = cos.float(), sin.float()
    return torch.cat([lo * c - hi * s, hi * c + lo * s], dim=-1)


def q_norm_rope_bf16(q, weight, cos, sin, eps=1e-6):
    return rope_rotate_half(rms_norm_fp32(q, weight, eps), cos, sin).to(torch.bfloat16)


def k_norm_rope_v_cache_bf16(k, v, weight, cos, sin, eps=1e-6):
    return q_norm_rope_bf16(k, weight, cos, sin, eps), v.clone()


def qkv_split_norm_rope_bf16(packed_qkv, norm_q_weight, norm_k_weight, freqs_re, freqs_im,
                             *, heads, head_dim, seq_len=None, eps=1e-6):
    B, L, _ = packed_qkv.shape
    D = heads * head_dim
    seq_len = L if seq_len is None else seq_len
    outs = []
    for i, w in enumerate((norm_q_weight, norm_k_weight)):
        x = packed_qkv[..., i * D:(i + 1) * D].reshape(B, L, heads, head_dim)
        n = rms_norm_fp32(x, w.view(heads, head_dim), eps, dims=(-2, -1))  # whole D
        a, b = n[..., 0::2], n[..., 1::2]
        rows = min(seq_len, L)
        fr = freqs_re[:rows].float()[None, :, None, :]
        fi = freqs_im[:rows].float()[None, :, None, :]
        y = n.clone()
        y[:, :rows, :, 0::2] = a[:, :rows] * fr - b[:, :rows] * fi
        y[:, :rows, :, 1::2] = a[:, :rows] * fi + b[:, :rows] * fr
        outs.append(y.to(torch.bfloat16))
    return outs[0], outs[1]
