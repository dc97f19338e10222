"""The math contract of flashrt-qkv-cache-rope in plain PyTorch (fp32 inside).

Used by the tests, by `flashrt validate` and as the eager baseline of the
benchmarks. Same names and signatures as the public functions; freshly
allocated outputs are returned, while caches / cat workspaces (whose other rows
must survive) are taken as arguments, cloned, and returned with the written
rows replaced. One rounding, at the end, like the kernels: the normalized value
stays fp32 before RoPE, a bias is added in fp32.
"""

import torch

_BF16 = torch.bfloat16


def rms_norm_fp32(x, weight, eps, dims=(-1,)):
    """RMSNorm with eps inside the root and the weight used as is (no 1 + w)."""
    x = x.float()
    inv = torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)
    return x * inv * weight.float()


def rope_half(n, c_lo, s_lo, c_hi=None, s_hi=None):
    """Rotate-half; with ``c_hi/s_hi`` the full-width table convention."""
    half = n.shape[-1] // 2
    lo, hi = n[..., :half], n[..., half:]
    c_hi = c_lo if c_hi is None else c_hi
    s_hi = s_lo if s_hi is None else s_hi
    return torch.cat([lo * c_lo - hi * s_lo, hi * c_hi + lo * s_hi], dim=-1)


def rope_pairs(n, fr, fi):
    """Interleaved pairs (2p, 2p+1) multiplied by fr + i*fi (broadcast over pairs)."""
    a, b = n[..., 0::2], n[..., 1::2]
    y = torch.empty_like(n)
    y[..., 0::2] = a * fr - b * fi
    y[..., 1::2] = a * fi + b * fr
    return y


# --- (f) decode -------------------------------------------------------------------------------


def decode_q_norm_rope_stage_bf16(q_pre, q_norm_weight, cos, sin, eps=1e-6):
    n = rms_norm_fp32(q_pre, q_norm_weight, eps)
    return rope_half(n, cos.float(), sin.float()).to(_BF16)


def decode_k_norm_rope_kvwrite_bf16(k_pre, v_pre, k_norm_weight, cos, sin, eps=1e-6):
    return decode_q_norm_rope_stage_bf16(k_pre, k_norm_weight, cos, sin, eps), v_pre.clone()


def decode_k_norm_rope_kvwrite_devpos_bf16(k_pre, v_pre, k_norm_weight, cos, sin, cur_pos,
                                           k_cache, v_cache, eps=1e-6):
    """Row ``cur_pos`` of the caches replaced; a position outside the cache writes nothing."""
    k_cache, v_cache = k_cache.clone(), v_cache.clone()
    pos = int(cur_pos.reshape(-1)[0])
    if 0 <= pos < k_cache.shape[0]:
        k_cache[pos] = decode_q_norm_rope_stage_bf16(k_pre, k_norm_weight, cos, sin, eps)
        v_cache[pos] = v_pre
    return k_cache, v_cache


# --- (c) per-head GQA, strided ------------------------------------------------------------------


def _per_head_full(x, w, cos, sin, eps):
    """x (..., heads, 128); cos/sin (..., 128) full-width rows broadcast over heads."""
    n = rms_norm_fp32(x, w, eps)
    c, s = cos.float()[..., None, :], sin.float()[..., None, :]
    return rope_half(n, c[..., :64], s[..., :64], c[..., 64:], s[..., 64:]).to(_BF16)


def qkv_split_per_head_norm_rope_bf16(packed_qkv, q_norm_weight, k_norm_weight, cos, sin,
                                      q_heads, kv_heads, eps=1e-6):
    B, S, _ = packed_qkv.shape
    x = packed_qkv.view(B, S, q_heads + 2 * kv_heads, 128)
    q = _per_head_full(x[:, :, :q_heads], q_norm_weight, cos, sin, eps)
    k = _per_head_full(x[:, :, q_heads:q_heads + kv_heads], k_norm_weight, cos, sin, eps)
    return q, k, x[:, :, q_heads + kv_heads:].clone()


def qk_norm_rope_strided_bf16(q_in, k_in, q_weight, k_weight, cos, sin, q_heads, k_heads,
                              eps=1e-6):
    rows = q_in.shape[0]
    q = q_in[:, :q_heads * 128].reshape(rows, q_heads, 128)
    k = k_in[:, :k_heads * 128].reshape(rows, k_heads, 128)
    return (_per_head_full(q, q_weight, cos, sin, eps),
            _per_head_full(k, k_weight, cos, sin, eps))


# --- (b) whole-hidden (Wan) ----------------------------------------------------------------------


def _wan_qk(a, wq, wk, freqs_re, freqs_im, heads, head_dim, rope_seq_len, eps):
    """a: fp32 (B, S, 3*D) (bias already added). Returns bf16 (q, k) (B, S, heads, hd)."""
    B, S, _ = a.shape
    D = heads * head_dim
    outs = []
    for i, w in enumerate((wq, wk)):
        x = a[..., i * D:(i + 1) * D].reshape(B, S, heads, head_dim)
        n = rms_norm_fp32(x, w.view(heads, head_dim), eps, dims=(-2, -1))  # whole D
        y = n.clone()
        rows = rope_seq_len
        if rows > 0:
            fr = freqs_re[:rows].float()[None, :, None, :]
            fi = freqs_im[:rows].float()[None, :, None, :]
            y[:, :rows] = rope_pairs(n[:, :rows], fr, fi)
        outs.append(y.to(_BF16))
    return outs[0], outs[1]


def qkv_split_norm_rope_bf16(packed_qkv, norm_q_weight, norm_k_weight, freqs_re, freqs_im,
                             heads, head_dim, rope_seq_len=None, eps=1e-6):
    rope_seq_len = packed_qkv.shape[1] if rope_seq_len is None else rope_seq_len
    return _wan_qk(packed_qkv.float(), norm_q_weight, norm_k_weight, freqs_re, freqs_im, heads,
                   head_dim, rope_seq_len, eps)


def qkv_split_bias_norm_rope_v_bf16(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re,
                                    freqs_im, heads, head_dim, rope_seq_len=None, eps=1e-6):
    B, S, _ = packed_qkv.shape
    D = heads * head_dim
    rope_seq_len = S if rope_seq_len is None else rope_seq_len
    a = packed_qkv.float() + qkv_bias.float()
    q, k = _wan_qk(a, norm_q_weight, norm_k_weight, freqs_re, freqs_im, heads, head_dim,
                   rope_seq_len, eps)
    return q, k, a[..., 2 * D:].reshape(B, S, heads, head_dim).to(_BF16)


def qkv_split_bias_norm_rope_v_cat_bf16(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight,
                                        freqs_re, freqs_im, heads, head_dim, video_offset,
                                        q_cat_out, k_cat_out, v_cat_out, rope_seq_len=None,
                                        eps=1e-6):
    S = packed_qkv.shape[1]
    outs = qkv_split_bias_norm_rope_v_bf16(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight,
                                           freqs_re, freqs_im, heads, head_dim, rope_seq_len, eps)
    cats = [c.clone() for c in (q_cat_out, k_cat_out, v_cat_out)]
    for c, o in zip(cats, outs):
        c[:, video_offset:video_offset + S] = o
    return tuple(cats)


def qkv_split_joint3_cat_bf16(packed_v, qkv_v_bias, norm_v_q_weight, norm_v_k_weight, freqs_re,
                              freqs_im, packed_a, norm_a_q_weight, norm_a_k_weight, packed_u,
                              norm_u_q_weight, norm_u_k_weight, heads, head_dim, q_cat_out,
                              k_cat_out, v_cat_out, rope_seq_len=None, eps_v=1e-6, eps_a=1e-6,
                              eps_u=1e-6):
    D = heads * head_dim
    segs = [qkv_split_bias_norm_rope_v_bf16(packed_v, qkv_v_bias, norm_v_q_weight,
                                            norm_v_k_weight, freqs_re, freqs_im, heads, head_dim,
                                            rope_seq_len, eps_v)]
    for packed, wq, wk, eps in ((packed_a, norm_a_q_weight, norm_a_k_weight, eps_a),
                                (packed_u, norm_u_q_weight, norm_u_k_weight, eps_u)):
        B, L, _ = packed.shape
        q, k = _wan_qk(packed.float(), wq, wk, freqs_re, freqs_im, heads, head_dim, 0, eps)
        segs.append((q, k, packed[..., 2 * D:].reshape(B, L, heads, head_dim).clone()))
    cats = [c.clone() for c in (q_cat_out, k_cat_out, v_cat_out)]
    for i in range(3):
        cats[i][:] = torch.cat([s[i] for s in segs], dim=1)
    return tuple(cats)


# --- (a) plain split, (d) bias + RoPE ------------------------------------------------------------


def qkv_split_bf16(packed_qkv, heads, head_dim):
    B, S, _ = packed_qkv.shape
    x = packed_qkv.view(B, S, 3, heads, head_dim)
    return x[:, :, 0].clone(), x[:, :, 1].clone(), x[:, :, 2].clone()


def _bias_rope(dtype, packed_qkv, qkv_bias, cos, sin, q_heads, kv_heads, head_dim):
    B, S, _ = packed_qkv.shape
    a = (packed_qkv.float() + qkv_bias.float()).view(B, S, q_heads + 2 * kv_heads, head_dim)
    half = head_dim // 2
    c = cos[..., :half].float()[:, :, None, :]  # a full-width table: only its first half
    s = sin[..., :half].float()[:, :, None, :]
    q = rope_half(a[:, :, :q_heads], c, s)
    k = rope_half(a[:, :, q_heads:q_heads + kv_heads], c, s)
    return q.to(dtype), k.to(dtype), a[:, :, q_heads + kv_heads:].to(dtype)


def qkv_split_bias_rope_bf16(packed_qkv, qkv_bias, cos, sin, q_heads, kv_heads, head_dim):
    return _bias_rope(_BF16, packed_qkv, qkv_bias, cos, sin, q_heads, kv_heads, head_dim)


def qkv_split_bias_rope_fp16(packed_qkv, qkv_bias, cos, sin, q_heads, kv_heads, head_dim):
    return _bias_rope(torch.float16, packed_qkv, qkv_bias, cos, sin, q_heads, kv_heads, head_dim)


# --- (e) GQA + interleaved RoPE + KV cache ---------------------------------------------------------


def _kvcache(packed_qkv, rope, q_heads, kv_heads, head_dim, row0, k_cache, v_cache):
    B, S, _ = packed_qkv.shape
    x = packed_qkv.view(B, S, q_heads + 2 * kv_heads, head_dim)
    fr = rope[:S, 0::2].float()[None, :, None, :]
    fi = rope[:S, 1::2].float()[None, :, None, :]
    q = rope_pairs(x[:, :, :q_heads].float(), fr, fi).to(packed_qkv.dtype)
    k = rope_pairs(x[:, :, q_heads:q_heads + kv_heads].float(), fr, fi).to(packed_qkv.dtype)
    v = x[:, :, q_heads + kv_heads:]
    k_cache, v_cache = k_cache.clone(), v_cache.clone()
    for s in range(S):  # rows outside the cache are skipped
        if 0 <= row0 + s < k_cache.shape[1]:
            k_cache[:, row0 + s] = k[:, s]
            v_cache[:, row0 + s] = v[:, s]
    return q, k_cache, v_cache


def qkv_split_rope_kvcache_bf16(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset,
                                q_out=None, k_cache=None, v_cache=None, max_seq_len=None):
    """``k_cache``/``v_cache`` are required here (their other rows are part of the result)."""
    return _kvcache(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset, k_cache, v_cache)


def qkv_split_rope_kvcache_fp16(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset=0,
                                device_position=None, q_out=None, k_cache=None, v_cache=None,
                                max_seq_len=None):
    row0 = cache_offset
    if device_position is not None:
        row0 += int(device_position.reshape(-1)[0])
    return _kvcache(packed_qkv, rope, q_heads, kv_heads, head_dim, row0, k_cache, v_cache)
