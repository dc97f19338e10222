"""Split / bias + RoPE / KV-cache families without normalization
(spec: postprocess-norms.md §2, groups a, d, e).

* ``_split_kernel``: plain copy of the Q, K, V sections of a packed row
  (``qkv_split_bf16``; any head_dim).
* ``_bias_rope_kernel``: GQA packed row + bias in fp32, rotate-half RoPE with the
  first half of fp32 ``cos``/``sin`` rows (B, S, HD/2 or HD) on Q and K heads,
  ``V = round(x + bias)``; bf16 or fp16 outputs (``qkv_split_bias_rope_*``).
* ``_rope_kvcache_kernel``: GQA packed row, interleaved RoPE from a packed
  ``[cos0, sin0, cos1, sin1, ...]`` table row ``s`` (position within the call)
  on Q and K heads; Q to ``q_out``, K and V (bit copy) to cache row
  ``cache_offset (+ device_position[0]) + s``. Rows whose destination falls
  outside ``[0, max_seq_len)`` are skipped on the device (only reachable with a
  device position; host offsets are checked before launch).

The KV-cache kernel loads whole head vectors and table rows and splits them
into (even, odd) pairs in registers: vector-width accesses whenever the
pointers allow (Triton specializes on 16-byte alignment), element accesses at
any other alignment (the spec tests unaligned cache pointers).
"""

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ._common import BF16, FP16, FP32, I32, check_gqa_packed, check_packed3, \
    vector_config
from ._helpers import enter_dependent_launch, rope_half, rope_pair
from ._host import (cdiv, check_int, check_same_device, check_shape, check_tensor,
                    dependent_launch, device_guard, launch_directly, next_power_of_2)
from ._ops import add_op_namespace_prefix


# ----------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------


@triton.jit(do_not_specialize=["n_rows"])
def _split_kernel(x_ptr, q_ptr, k_ptr, v_ptr, n_rows, D,
                  BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, PDL: tl.constexpr = False):
    """Grid (row blocks, 3 sections, column blocks): a contiguous copy per tile."""
    enter_dependent_launch(PDL)
    i_t = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    sec = tl.program_id(1)
    o_c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    m = (i_t < n_rows)[:, None] & (o_c < D)[None, :]
    b_x = tl.load(x_ptr + i_t[:, None] * (3 * D) + sec * D + o_c[None, :], mask=m)
    o_o = i_t[:, None] * D + o_c[None, :]
    if sec == 0:
        tl.store(q_ptr + o_o, b_x, mask=m)
    elif sec == 1:
        tl.store(k_ptr + o_o, b_x, mask=m)
    else:
        tl.store(v_ptr + o_o, b_x, mask=m)


@triton.jit(do_not_specialize=["n_rows"])
def _bias_rope_kernel(x_ptr, bias_ptr, cos_ptr, sin_ptr, q_ptr, k_ptr, v_ptr, n_rows, tab_rs,
                      QH: tl.constexpr, KVH: tl.constexpr, HD: tl.constexpr,
                      BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr, PDL: tl.constexpr = False):
    """BLOCK_V head vectors per program; vector i = r*H + h sits at x[i*HD]."""
    enter_dependent_launch(PDL)
    HALF: tl.constexpr = HD // 2
    H: tl.constexpr = QH + 2 * KVH
    i_v = tl.program_id(0).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)
    m_v = i_v < n_rows * H
    r = i_v // H
    h = i_v % H
    o_j = tl.arange(0, BLOCK_H)[None, :]
    m = m_v[:, None] & (o_j < HALF)

    p_x = x_ptr + i_v[:, None] * HD + o_j
    p_b = bias_ptr + h[:, None] * HD + o_j
    x_lo = tl.load(p_x, mask=m, other=0.0).to(tl.float32)
    x_hi = tl.load(p_x + HALF, mask=m, other=0.0).to(tl.float32)
    b_lo = tl.load(p_b, mask=m, other=0.0).to(tl.float32)
    b_hi = tl.load(p_b + HALF, mask=m, other=0.0).to(tl.float32)
    o_t = (r * tab_rs)[:, None] + o_j
    c = tl.load(cos_ptr + o_t, mask=m, other=0.0)
    s = tl.load(sin_ptr + o_t, mask=m, other=0.0)

    a_lo = x_lo + b_lo  # fp32, not rounded
    a_hi = x_hi + b_hi
    is_q = h < QH
    is_v = h >= QH + KVH
    rot = ~is_v[:, None]
    r_lo, r_hi = rope_half(a_lo, a_hi, c, s)
    y_lo = tl.where(rot, r_lo, a_lo)
    y_hi = tl.where(rot, r_hi, a_hi)

    hk = h - QH - tl.where(is_v, KVH, 0)
    o_o = (tl.where(is_q, r * QH + h, r * KVH + hk) * HD)[:, None] + o_j
    p_o = tl.where(is_q[:, None], q_ptr + o_o, tl.where(is_v[:, None], v_ptr + o_o, k_ptr + o_o))
    tl.store(p_o, y_lo.to(q_ptr.dtype.element_ty), mask=m)
    tl.store(p_o + HALF, y_hi.to(q_ptr.dtype.element_ty), mask=m)


@triton.jit(do_not_specialize=["n_rows", "seq", "cache_offset", "max_s"])
def _rope_kvcache_kernel(x_ptr, rope_ptr, q_ptr, k_ptr, v_ptr, pos_ptr,
                         n_rows, seq, cache_offset, max_s,
                         QH: tl.constexpr, KVH: tl.constexpr, HD: tl.constexpr,
                         HAS_POS: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr,
                         PDL: tl.constexpr = False):
    """BLOCK_V head vectors per program; pairs (2p, 2p+1) rotated by rope[s, 2p:2p+2].

    Head vectors and table rows are loaded whole (contiguous, vector-width
    accesses) and split into their even / odd elements in registers.
    """
    enter_dependent_launch(PDL)
    H: tl.constexpr = QH + 2 * KVH
    i_v = tl.program_id(0).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)
    m_v = i_v < n_rows * H
    r = i_v // H
    h = i_v % H
    b = r // seq
    s = r % seq
    is_q = h < QH
    is_v = h >= QH + KVH
    o_d = tl.arange(0, BLOCK_D)[None, :]
    m = m_v[:, None] & (o_d < HD)

    b_x = tl.load(x_ptr + i_v[:, None] * HD + o_d, mask=m, other=0.0)
    b_t = tl.load(rope_ptr + (s * HD)[:, None] + o_d, mask=m & ~is_v[:, None], other=0.0)
    x_a, x_b = tl.split(tl.reshape(b_x, [BLOCK_V, BLOCK_D // 2, 2]))
    c, sn = tl.split(tl.reshape(b_t, [BLOCK_V, BLOCK_D // 2, 2]))
    y_a, y_b = rope_pair(x_a.to(tl.float32), x_b.to(tl.float32), c.to(tl.float32),
                         sn.to(tl.float32))
    y = tl.reshape(tl.join(y_a, y_b), [BLOCK_V, BLOCK_D]).to(b_x.dtype)
    y = tl.where(is_v[:, None], b_x, y)  # V: bit copy

    d = cache_offset + s
    if HAS_POS:  # read on the device: no host sync, CUDA-graph replayable
        d += tl.load(pos_ptr).to(tl.int64)
    hk = h - QH - tl.where(is_v, KVH, 0)
    o_o = tl.where(is_q, r * QH + h, (b * max_s + d) * KVH + hk) * HD
    o_o = o_o[:, None] + o_d
    p_o = tl.where(is_q[:, None], q_ptr + o_o,
                   tl.where(is_v[:, None], v_ptr + o_o, k_ptr + o_o))
    m_o = m & (is_q | ((d >= 0) & (d < max_s)))[:, None]
    tl.store(p_o, y, mask=m_o)


# ----------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------


def _split_config(D, n_rows):
    """Tiles of ~4k elements (16 per thread at 8 warps): 16-byte accesses, few programs."""
    block_c = min(next_power_of_2(D), 1024)
    block_t = min(max(1, 4096 // block_c), next_power_of_2(n_rows))
    num_warps = 8 if block_t * block_c >= 4096 else 4
    return block_t, block_c, num_warps


def _run_split(packed, heads, head_dim, q, k, v):
    B, S, _ = packed.shape
    D = heads * head_dim
    block_t, block_c, num_warps = _split_config(D, B * S)
    grid = (cdiv(B * S, block_t), 3, cdiv(D, block_c))
    with device_guard(packed):
        _split_kernel[grid](packed, q, k, v, B * S, D, BLOCK_T=block_t, BLOCK_C=block_c,
                            num_warps=num_warps, **dependent_launch(packed.device))


def _run_bias_rope(packed, bias, cos, sin, q_heads, kv_heads, head_dim, q, k, v):
    B, S, _ = packed.shape
    n_vec = B * S * (q_heads + 2 * kv_heads)
    block_h = next_power_of_2(head_dim // 2)
    block_v, num_warps = vector_config(n_vec, 2 * block_h, packed.device)
    with device_guard(packed):
        _bias_rope_kernel[(cdiv(n_vec, block_v),)](
            packed, bias, cos, sin, q, k, v, B * S, cos.shape[2], QH=q_heads, KVH=kv_heads,
            HD=head_dim, BLOCK_V=block_v, BLOCK_H=block_h, num_warps=num_warps,
            **dependent_launch(packed.device))


def _run_kvcache(packed, rope, q_heads, kv_heads, head_dim, cache_offset, device_position,
                 q, k_cache, v_cache):
    B, S, _ = packed.shape
    n_vec = B * S * (q_heads + 2 * kv_heads)
    block_d = next_power_of_2(head_dim)
    block_v, num_warps = vector_config(n_vec, block_d, packed.device)
    with device_guard(packed):
        _rope_kvcache_kernel[(cdiv(n_vec, block_v),)](
            packed, rope, q, k_cache, v_cache, rope if device_position is None else device_position,
            B * S, S, cache_offset, k_cache.shape[1], QH=q_heads, KVH=kv_heads, HD=head_dim,
            HAS_POS=device_position is not None, BLOCK_V=block_v, BLOCK_D=block_d,
            num_warps=num_warps, **dependent_launch(packed.device))


# ----------------------------------------------------------------------------
# Shape checks (wrappers and fakes)
# ----------------------------------------------------------------------------


def _check_split(packed, heads, head_dim, outs):
    check_packed3(packed, "packed_qkv")
    check_int(heads, "heads", minimum=1)
    check_int(head_dim, "head_dim", minimum=1)
    D = heads * head_dim
    if packed.shape[2] != 3 * D:
        raise RuntimeError(f"packed_qkv last dimension must be 3 * heads * head_dim = {3 * D}, "
                           f"got {packed.shape[2]}")
    B, S, _ = packed.shape
    want = (B, S, heads, head_dim)
    q_out, k_out, v_out = outs
    if q_out is not None:
        check_shape(q_out, "q_out", want)
    for name, t in (("k_out", k_out), ("v_out", v_out)):
        if t is not None:
            check_shape(t, name, want, f"{name} must have the same shape as q_out {want}")


def _check_bias_rope(packed, bias, cos, sin, q_heads, kv_heads, head_dim, outs):
    check_int(head_dim, "head_dim", minimum=1)
    if head_dim % 2 != 0:
        raise RuntimeError(f"head_dim must be even, got {head_dim}")
    B, S = check_gqa_packed(packed, q_heads, kv_heads, head_dim)
    check_shape(bias, "qkv_bias", (packed.shape[2],))
    if cos.dim() != 3 or cos.shape[0] != B or cos.shape[1] != S or \
            cos.shape[2] not in (head_dim // 2, head_dim):
        raise RuntimeError(f"cos must have shape (B, S, head_dim / 2) or (B, S, head_dim) = "
                           f"({B}, {S}, {head_dim // 2} or {head_dim}), got {tuple(cos.shape)}")
    check_shape(sin, "sin", cos.shape, "sin shape must match cos shape")
    for name, t, heads in zip(("q_out", "k_out", "v_out"), outs,
                              (q_heads, kv_heads, kv_heads)):
        if t is not None:
            check_shape(t, name, (B, S, heads, head_dim))


def _check_kvcache(packed, rope, q_heads, kv_heads, head_dim, cache_offset, q_out, k_cache,
                   v_cache, bounded):
    check_int(head_dim, "head_dim", minimum=1)
    if head_dim % 2 != 0:
        raise RuntimeError(f"head_dim must be even, got {head_dim}")
    B, S = check_gqa_packed(packed, q_heads, kv_heads, head_dim)
    if rope.dim() != 2 or rope.shape[0] < S or rope.shape[1] != head_dim:
        raise RuntimeError(f"rope must have shape (>= {S}, head_dim = {head_dim}), "
                           f"got {tuple(rope.shape)}")
    check_int(cache_offset, "cache_offset", minimum=0)
    if q_out is not None:
        check_shape(q_out, "q_out", (B, S, q_heads, head_dim))
    # The layout rule applies to whichever caches are given; the messages name k_cache
    # (a V-only call is held to the same shape).
    cache = k_cache if k_cache is not None else v_cache
    if cache is not None:
        if cache.dim() != 4 or cache.shape[0] != B or cache.shape[2] != kv_heads or \
                cache.shape[3] != head_dim:
            raise RuntimeError(f"k_cache must have shape ({B}, max_seq_len, {kv_heads}, "
                               f"{head_dim}), got {tuple(cache.shape)}")
        if k_cache is not None and v_cache is not None:
            check_shape(v_cache, "v_cache", k_cache.shape, "v_cache shape must match k_cache shape")
        if bounded and cache_offset + S > cache.shape[1]:
            raise RuntimeError(f"cache_offset + seq_len must be within k_cache.shape[1] = "
                               f"{cache.shape[1]}, got {cache_offset} + {S}")


def _check_device_position(device_position):
    if device_position.dtype != I32 or device_position.numel() != 1:
        raise RuntimeError(f"device_position must contain one int32 element, got "
                           f"{device_position.numel()} of {device_position.dtype}")


# ----------------------------------------------------------------------------
# Ops (out-variant, void) + fakes
# ----------------------------------------------------------------------------


@torch.library.custom_op(add_op_namespace_prefix("qkv_split_bf16"),
                         mutates_args=("q_out", "k_out", "v_out"))
def _split_op(packed_qkv: torch.Tensor, heads: int, head_dim: int, q_out: torch.Tensor,
              k_out: torch.Tensor, v_out: torch.Tensor) -> None:
    _run_split(packed_qkv, heads, head_dim, q_out, k_out, v_out)


@torch.library.register_fake(add_op_namespace_prefix("qkv_split_bf16"))
def _split_fake(packed_qkv, heads, head_dim, q_out, k_out, v_out):
    _check_split(packed_qkv, heads, head_dim, (q_out, k_out, v_out))


def _bias_rope_schema(name):
    @torch.library.custom_op(add_op_namespace_prefix(name), mutates_args=("q_out", "k_out", "v_out"))
    def op(packed_qkv: torch.Tensor, qkv_bias: torch.Tensor, cos: torch.Tensor,
           sin: torch.Tensor, q_heads: int, kv_heads: int, head_dim: int, q_out: torch.Tensor,
           k_out: torch.Tensor, v_out: torch.Tensor) -> None:
        _run_bias_rope(packed_qkv, qkv_bias, cos, sin, q_heads, kv_heads, head_dim,
                       q_out, k_out, v_out)

    @torch.library.register_fake(add_op_namespace_prefix(name))
    def fake(packed_qkv, qkv_bias, cos, sin, q_heads, kv_heads, head_dim, q_out, k_out, v_out):
        _check_bias_rope(packed_qkv, qkv_bias, cos, sin, q_heads, kv_heads, head_dim,
                         (q_out, k_out, v_out))

    return op


_bias_rope_bf16_op = _bias_rope_schema("qkv_split_bias_rope_bf16")
_bias_rope_fp16_op = _bias_rope_schema("qkv_split_bias_rope_fp16")


@torch.library.custom_op(add_op_namespace_prefix("qkv_split_rope_kvcache_bf16"),
                         mutates_args=("q_out", "k_cache", "v_cache"))
def _kvcache_bf16_op(packed_qkv: torch.Tensor, rope: torch.Tensor, q_heads: int, kv_heads: int,
                     head_dim: int, cache_offset: int, q_out: torch.Tensor,
                     k_cache: torch.Tensor, v_cache: torch.Tensor) -> None:
    _run_kvcache(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset, None, q_out,
                 k_cache, v_cache)


@torch.library.register_fake(add_op_namespace_prefix("qkv_split_rope_kvcache_bf16"))
def _kvcache_bf16_fake(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset, q_out,
                       k_cache, v_cache):
    _check_kvcache(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset, q_out, k_cache,
                   v_cache, bounded=True)


@torch.library.custom_op(add_op_namespace_prefix("qkv_split_rope_kvcache_fp16"),
                         mutates_args=("q_out", "k_cache", "v_cache"))
def _kvcache_fp16_op(packed_qkv: torch.Tensor, rope: torch.Tensor, q_heads: int, kv_heads: int,
                     head_dim: int, cache_offset: int, device_position: Optional[torch.Tensor],
                     q_out: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> None:
    _run_kvcache(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset, device_position,
                 q_out, k_cache, v_cache)


@torch.library.register_fake(add_op_namespace_prefix("qkv_split_rope_kvcache_fp16"))
def _kvcache_fp16_fake(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset,
                       device_position, q_out, k_cache, v_cache):
    _check_kvcache(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset, q_out, k_cache,
                   v_cache, bounded=device_position is None)
    if device_position is not None:
        _check_device_position(device_position)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def qkv_split_bf16(
    packed_qkv: torch.Tensor, heads: int, head_dim: int, q_out: Optional[torch.Tensor] = None,
    k_out: Optional[torch.Tensor] = None, v_out: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Copy the Q, K, V sections of packed (B, S, 3*heads*head_dim) into
    (B, S, heads, head_dim) outputs (any head_dim)."""
    check_tensor(packed_qkv, "packed_qkv", BF16)
    _check_split(packed_qkv, heads, head_dim, (q_out, k_out, v_out))
    B, S, _ = packed_qkv.shape
    outs = []
    for name, t in (("q_out", q_out), ("k_out", k_out), ("v_out", v_out)):
        t = packed_qkv.new_empty((B, S, heads, head_dim)) if t is None else t
        check_tensor(t, name, BF16)
        outs.append((name, t))
    check_same_device([("packed_qkv", packed_qkv)] + outs)
    q_out, k_out, v_out = (t for _, t in outs)
    run = _run_split if launch_directly(packed_qkv) else _split_op
    run(packed_qkv, heads, head_dim, q_out, k_out, v_out)
    return q_out, k_out, v_out


def _bias_rope(out_dtype, op, packed_qkv, qkv_bias, cos, sin, q_heads, kv_heads, head_dim,
               q_out, k_out, v_out):
    named = [("packed_qkv", packed_qkv, BF16), ("qkv_bias", qkv_bias, BF16), ("cos", cos, FP32),
             ("sin", sin, FP32)]
    for name, t, dtype in named:
        check_tensor(t, name, dtype)
    _check_bias_rope(packed_qkv, qkv_bias, cos, sin, q_heads, kv_heads, head_dim,
                     (q_out, k_out, v_out))
    B, S, _ = packed_qkv.shape
    outs = []
    for name, t, heads in (("q_out", q_out, q_heads), ("k_out", k_out, kv_heads),
                           ("v_out", v_out, kv_heads)):
        t = packed_qkv.new_empty((B, S, heads, head_dim), dtype=out_dtype) if t is None else t
        check_tensor(t, name, out_dtype)
        outs.append((name, t))
    check_same_device([(n, t) for n, t, _ in named] + outs)
    q_out, k_out, v_out = (t for _, t in outs)
    run = _run_bias_rope if launch_directly(packed_qkv) else op
    run(packed_qkv, qkv_bias, cos, sin, q_heads, kv_heads, head_dim, q_out, k_out, v_out)
    return q_out, k_out, v_out


def qkv_split_bias_rope_bf16(
    packed_qkv: torch.Tensor, qkv_bias: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
    q_heads: int, kv_heads: int, head_dim: int, q_out: Optional[torch.Tensor] = None,
    k_out: Optional[torch.Tensor] = None, v_out: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GQA packed (B, S, (QH+2*KVH)*HD) + bias (fp32 sum), rotate-half RoPE on Q/K
    with the first HD/2 entries of fp32 cos/sin rows (B, S, HD/2 or HD);
    V = bf16(x + bias). Outputs bf16."""
    return _bias_rope(BF16, _bias_rope_bf16_op, packed_qkv, qkv_bias, cos, sin, q_heads,
                      kv_heads, head_dim, q_out, k_out, v_out)


def qkv_split_bias_rope_fp16(
    packed_qkv: torch.Tensor, qkv_bias: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
    q_heads: int, kv_heads: int, head_dim: int, q_out: Optional[torch.Tensor] = None,
    k_out: Optional[torch.Tensor] = None, v_out: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``qkv_split_bias_rope_bf16`` with fp16 outputs (inputs stay bf16, tables fp32)."""
    return _bias_rope(FP16, _bias_rope_fp16_op, packed_qkv, qkv_bias, cos, sin, q_heads,
                      kv_heads, head_dim, q_out, k_out, v_out)


def _kvcache(dtype, packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset, device_position,
             q_out, k_cache, v_cache, max_seq_len):
    named = [("packed_qkv", packed_qkv), ("rope", rope)]
    for name, t in named:
        check_tensor(t, name, dtype)
    if device_position is not None:
        _check_device_position(device_position)
        check_tensor(device_position, "device_position", I32)
        named.append(("device_position", device_position))
    bounded = device_position is None
    _check_kvcache(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset, q_out, k_cache,
                   v_cache, bounded)
    B, S, _ = packed_qkv.shape
    if k_cache is None or v_cache is None:
        if max_seq_len is None:
            if device_position is not None:  # the spec's one ValueError
                raise ValueError("max_seq_len is required when device_position is used")
            if k_cache is not None or v_cache is not None:
                max_seq_len = (k_cache if k_cache is not None else v_cache).shape[1]
            else:
                max_seq_len = cache_offset + S
        check_int(max_seq_len, "max_seq_len", minimum=1)
        if bounded and cache_offset + S > max_seq_len:
            raise RuntimeError(f"cache_offset + seq_len must be within k_cache.shape[1] = "
                               f"{max_seq_len}, got {cache_offset} + {S}")
        shape = (B, max_seq_len, kv_heads, head_dim)
        if (k_cache is not None and tuple(k_cache.shape) != shape) or \
                (v_cache is not None and tuple(v_cache.shape) != shape):
            raise RuntimeError(f"v_cache shape must match k_cache shape {shape}")
    q_out = packed_qkv.new_empty((B, S, q_heads, head_dim)) if q_out is None else q_out
    k_cache = packed_qkv.new_empty(shape) if k_cache is None else k_cache
    v_cache = packed_qkv.new_empty(shape) if v_cache is None else v_cache
    outs = [("q_out", q_out), ("k_cache", k_cache), ("v_cache", v_cache)]
    for name, t in outs:
        check_tensor(t, name, dtype)
    check_same_device(named + outs)
    return q_out, k_cache, v_cache


def qkv_split_rope_kvcache_bf16(
    packed_qkv: torch.Tensor, rope: torch.Tensor, q_heads: int, kv_heads: int, head_dim: int,
    cache_offset: int, q_out: Optional[torch.Tensor] = None,
    k_cache: Optional[torch.Tensor] = None, v_cache: Optional[torch.Tensor] = None,
    max_seq_len: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GQA packed (B, S, (QH+2*KVH)*HD): interleaved RoPE with ``rope[s]``
    (``[cos0, sin0, ...]``, row = position within this call) on Q and K;
    ``q_out[b, s]``, ``k_cache[b, cache_offset + s]`` = rotated,
    ``v_cache[b, cache_offset + s]`` = V bits. Other cache rows untouched."""
    q_out, k_cache, v_cache = _kvcache(BF16, packed_qkv, rope, q_heads, kv_heads, head_dim,
                                       cache_offset, None, q_out, k_cache, v_cache, max_seq_len)
    if launch_directly(packed_qkv):
        _run_kvcache(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset, None, q_out,
                     k_cache, v_cache)
    else:
        _kvcache_bf16_op(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset, q_out,
                         k_cache, v_cache)
    return q_out, k_cache, v_cache


def qkv_split_rope_kvcache_fp16(
    packed_qkv: torch.Tensor, rope: torch.Tensor, q_heads: int, kv_heads: int, head_dim: int,
    cache_offset: int = 0, device_position: Optional[torch.Tensor] = None,
    q_out: Optional[torch.Tensor] = None, k_cache: Optional[torch.Tensor] = None,
    v_cache: Optional[torch.Tensor] = None, max_seq_len: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FP16 twin of ``qkv_split_rope_kvcache_bf16`` (all tensors fp16). With
    ``device_position`` (int32, one element, read on the device) the cache row is
    ``cache_offset + device_position[0] + s``; rows outside ``[0, max_seq_len)``
    are skipped (nothing written there), Q is always written."""
    q_out, k_cache, v_cache = _kvcache(FP16, packed_qkv, rope, q_heads, kv_heads, head_dim,
                                       cache_offset, device_position, q_out, k_cache, v_cache,
                                       max_seq_len)
    if launch_directly(packed_qkv):
        _run_kvcache(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset, device_position,
                     q_out, k_cache, v_cache)
    else:
        _kvcache_fp16_op(packed_qkv, rope, q_heads, kv_heads, head_dim, cache_offset,
                         device_position, q_out, k_cache, v_cache)
    return q_out, k_cache, v_cache
