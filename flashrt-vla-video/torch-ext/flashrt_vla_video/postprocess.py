"""Attention post-process kernels: RMSNorm + RoPE on Q/K, V cache copy.

Three public functions (spec: postprocess-norms.md §1):

* ``q_norm_rope_bf16``          decode Q: per-128 RMSNorm + rotate-half RoPE
* ``k_norm_rope_v_cache_bf16``  decode K (same math) + bit copy of V
* ``qkv_split_norm_rope_bf16``  packed QKV: whole-hidden RMSNorm of Q and K
                                + interleaved RoPE from fp32 tables (Wan style)

Each is a thin wrapper (validate, allocate missing outputs, launch) over an
out-variant ``torch.library.custom_op`` that launches one Triton kernel. Eager
calls launch the kernel directly (the op's dispatch would triple the host
time); under torch.compile the op is what gets traced.
"""

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ._helpers import rms_inv, rope_half, rope_pair
from ._host import (cdiv, check_int, check_same_device, check_shape, check_tensor,
                    device_guard, launch_directly, next_power_of_2, sm_count)
from ._ops import add_op_namespace_prefix

HEAD_DIM = 128  # decode kernels are fixed to head_dim 128 (spec)
_DECODE_BLOCK_ROWS = 16
_BF16 = torch.bfloat16
_FP32 = torch.float32


# ----------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------


@triton.jit(do_not_specialize=["n_rows"])
def _decode_norm_rope_kernel(
    x_ptr, w_ptr, cos_ptr, sin_ptr, out_ptr, v_ptr, v_out_ptr,
    n_rows, eps,
    HAS_V: tl.constexpr, BLOCK_ROWS: tl.constexpr, HD: tl.constexpr,
):
    """BLOCK_ROWS rows of HD per program; rotate-half RoPE on (lo, hi) halves."""
    HALF: tl.constexpr = HD // 2
    i_r = tl.program_id(0).to(tl.int64) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    o_h = tl.arange(0, HALF)
    m_r = (i_r < n_rows)[:, None]
    o_lo = i_r[:, None] * HD + o_h[None, :]

    b_lo = tl.load(x_ptr + o_lo, mask=m_r, other=0.0).to(tl.float32)
    b_hi = tl.load(x_ptr + o_lo + HALF, mask=m_r, other=0.0).to(tl.float32)
    w_lo = tl.load(w_ptr + o_h).to(tl.float32)[None, :]
    w_hi = tl.load(w_ptr + HALF + o_h).to(tl.float32)[None, :]
    c = tl.load(cos_ptr + o_h).to(tl.float32)[None, :]
    s = tl.load(sin_ptr + o_h).to(tl.float32)[None, :]
    if HAS_V:  # V is copied bit for bit; its load is issued early too
        o_row = i_r[:, None] * HD + tl.arange(0, HD)[None, :]
        b_v = tl.load(v_ptr + o_row, mask=m_r)
    r = rms_inv(tl.sum(b_lo * b_lo, 1) + tl.sum(b_hi * b_hi, 1), HD, eps)[:, None]
    y_lo, y_hi = rope_half(b_lo * r * w_lo, b_hi * r * w_hi, c, s)
    tl.store(out_ptr + o_lo, y_lo.to(tl.bfloat16), mask=m_r)
    tl.store(out_ptr + o_lo + HALF, y_hi.to(tl.bfloat16), mask=m_r)

    if HAS_V:
        tl.store(v_out_ptr + o_row, b_v, mask=m_r)


@triton.jit(do_not_specialize=["n_rows", "seq_len_tokens", "seq_len"])
def _qkv_split_norm_rope_kernel(
    packed_ptr, wq_ptr, wk_ptr, fr_ptr, fi_ptr, q_out_ptr, k_out_ptr,
    n_rows, seq_len_tokens, seq_len, eps,
    P: tl.constexpr, HALF_HD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr,
    EARLY_LOADS: tl.constexpr,
):
    """BLOCK_T token rows x {Q, K} per program: RMSNorm over all D = 2*P elements
    of each section, then complex RoPE with the table row of the token.

    bf16 tensors arrive viewed as int32 words, each holding one RoPE pair
    (a = element 2p in the low half, b = 2p+1 in the high half): loads and
    stores stay 16-byte vectors and the pair needs no shuffle. bf16 -> fp32 is
    a 16-bit shift.
    """
    i_t = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)  # b * L + t
    m_t = i_t < n_rows
    o_s = tl.arange(0, 2)  # section: 0 = Q, 1 = K
    o_p = tl.arange(0, BLOCK_P)
    m_p = o_p < P
    m_x = m_t[:, None, None] & m_p[None, None, :]  # [BLOCK_T, 2, BLOCK_P]

    # Loads issued before the reduction overlap their latencies (one wave of
    # programs at T ~ 1k tokens otherwise waits on a chain of them); with several
    # waves the extra live registers cost more than they save: a switch.
    o_x = i_t[:, None, None] * (3 * P) + o_s[None, :, None] * P + o_p[None, None, :]
    b_x = tl.load(packed_ptr + o_x, mask=m_x, other=0)
    p_w = tl.where(o_s[:, None] == 0, wq_ptr, wk_ptr) + o_p[None, :]
    t = i_t % seq_len_tokens
    rotate = m_t & (t < seq_len)
    o_f = t[:, None] * HALF_HD + (o_p % HALF_HD)[None, :]
    m_f = rotate[:, None] & m_p[None, :]
    if EARLY_LOADS:
        b_w = tl.load(p_w, mask=m_p[None, :], other=0)[None, :, :]
        b_fr = tl.load(fr_ptr + o_f, mask=m_f, other=1.0)[:, None, :]
        b_fi = tl.load(fi_ptr + o_f, mask=m_f, other=0.0)[:, None, :]

    b_a = (b_x << 16).to(tl.float32, bitcast=True)
    b_b = (b_x & -65536).to(tl.float32, bitcast=True)
    r = rms_inv(tl.sum(b_a * b_a + b_b * b_b, 2), 2 * P, eps)[:, :, None]
    if not EARLY_LOADS:
        b_w = tl.load(p_w, mask=m_p[None, :], other=0)[None, :, :]
        b_fr = tl.load(fr_ptr + o_f, mask=m_f, other=1.0)[:, None, :]
        b_fi = tl.load(fi_ptr + o_f, mask=m_f, other=0.0)[:, None, :]
    n_a = b_a * r * (b_w << 16).to(tl.float32, bitcast=True)
    n_b = b_b * r * (b_w & -65536).to(tl.float32, bitcast=True)
    y_a, y_b = rope_pair(n_a, n_b, b_fr, b_fi)
    rot = rotate[:, None, None]
    y_a = tl.where(rot, y_a, n_a).to(tl.bfloat16).to(tl.int16, bitcast=True).to(tl.int32)
    y_b = tl.where(rot, y_b, n_b).to(tl.bfloat16).to(tl.int16, bitcast=True).to(tl.int32)
    y = (y_a & 0xFFFF) | (y_b << 16)

    p_o = tl.where(o_s[None, :, None] == 0, q_out_ptr, k_out_ptr)
    tl.store(p_o + i_t[:, None, None] * P + o_p[None, None, :], y, mask=m_x)




def _qkv_launch_config(D, n_rows, device):
    """(BLOCK_T, BLOCK_P, num_warps, EARLY_LOADS), measured on H100 at the Wan widths.

    One token per program at model widths (more per program measured slower);
    about 32 int32 pairs per thread. Early loads pay off when the grid is about
    one wave (<= 12 programs per SM: 1k tokens), and cost registers beyond
    that; two variants at most, never one per token count.
    """
    block_p = next_power_of_2(D // 2)
    block_t = max(1, 1024 // block_p)
    num_warps = max(1, min(16, 2 * block_t * block_p // 1024))
    early = cdiv(n_rows, block_t) <= 12 * sm_count(device, interpreted=1)
    return block_t, block_p, num_warps, early


# ----------------------------------------------------------------------------
# Shape checks shared by the wrappers and the fake (compile-time) impls
# ----------------------------------------------------------------------------


def _check_decode_shapes(x, x_name, weight, cos, sin):
    if x.dim() < 2:
        raise RuntimeError(f"{x_name} must have at least 2 dimensions, got {x.dim()}")
    if x.shape[-1] != HEAD_DIM:
        raise RuntimeError(f"{x_name} last dimension must be {HEAD_DIM}, got {x.shape[-1]}")
    if x.numel() == 0:
        raise RuntimeError(f"{x_name} must be non-empty")
    check_shape(weight, "weight", (HEAD_DIM,))
    check_shape(cos, "cos", (HEAD_DIM // 2,))
    check_shape(sin, "sin", (HEAD_DIM // 2,))


def _check_qkv_shapes(packed_qkv, norm_q_weight, norm_k_weight, freqs_re, freqs_im,
                      q_out, k_out, heads, head_dim, seq_len):
    if packed_qkv.dim() != 3:
        raise RuntimeError(f"packed_qkv must have 3 dimensions (B, L, 3*D), got {packed_qkv.dim()}")
    check_int(heads, "heads", minimum=1)
    check_int(head_dim, "head_dim", minimum=1)
    if head_dim % 2 != 0:
        raise RuntimeError(f"head_dim must be even, got {head_dim}")
    check_int(seq_len, "seq_len", minimum=0)
    B, L, width = packed_qkv.shape
    if B == 0 or L == 0:
        raise RuntimeError("packed_qkv must be non-empty (B > 0 and L > 0)")
    D = heads * head_dim
    if width != 3 * D:
        raise RuntimeError(
            f"packed_qkv last dimension must be 3 * heads * head_dim = {3 * D}, got {width}"
        )
    check_shape(norm_q_weight, "norm_q_weight", (D,))
    check_shape(norm_k_weight, "norm_k_weight", (D,))
    if freqs_re.dim() != 2 or freqs_re.shape[1] != head_dim // 2:
        raise RuntimeError(
            f"freqs_re must have shape (N, head_dim / 2 = {head_dim // 2}), got {tuple(freqs_re.shape)}"
        )
    check_shape(freqs_im, "freqs_im", freqs_re.shape, "freqs_im shape must match freqs_re shape")
    if seq_len > freqs_re.shape[0]:
        raise RuntimeError(
            f"seq_len must be <= freqs_re.size(0) = {freqs_re.shape[0]}, got {seq_len}"
        )
    for name, t in (("q_out", q_out), ("k_out", k_out)):
        if t is not None:  # the wrapper checks inputs before allocating outputs
            check_shape(t, name, (B, L, heads, head_dim))


# ----------------------------------------------------------------------------
# Ops (out-variant, void) + fakes for torch.compile
# ----------------------------------------------------------------------------


def _launch_decode(x, weight, cos, sin, out, v, v_out, eps):
    n_rows = x.numel() // HEAD_DIM
    grid = (cdiv(n_rows, _DECODE_BLOCK_ROWS),)
    with device_guard(x):
        _decode_norm_rope_kernel[grid](
            x, weight, cos, sin, out, v, v_out, n_rows, eps,
            HAS_V=v is not None, BLOCK_ROWS=_DECODE_BLOCK_ROWS, HD=HEAD_DIM, num_warps=4,
        )


@torch.library.custom_op(add_op_namespace_prefix("q_norm_rope_bf16"), mutates_args=("out",))
def _q_norm_rope_bf16_op(
    q: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
    out: torch.Tensor, eps: float = 1e-6,
) -> None:
    _launch_decode(q, weight, cos, sin, out, None, None, eps)


@torch.library.register_fake(add_op_namespace_prefix("q_norm_rope_bf16"))
def _q_norm_rope_bf16_fake(q, weight, cos, sin, out, eps=1e-6):
    if out.shape != q.shape:
        raise RuntimeError("out shape must match q shape")


@torch.library.custom_op(
    add_op_namespace_prefix("k_norm_rope_v_cache_bf16"), mutates_args=("k_out", "v_out")
)
def _k_norm_rope_v_cache_bf16_op(
    k: torch.Tensor, v: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor,
    sin: torch.Tensor, k_out: torch.Tensor, v_out: torch.Tensor, eps: float = 1e-6,
) -> None:
    _launch_decode(k, weight, cos, sin, k_out, v, v_out, eps)


@torch.library.register_fake(add_op_namespace_prefix("k_norm_rope_v_cache_bf16"))
def _k_norm_rope_v_cache_bf16_fake(k, v, weight, cos, sin, k_out, v_out, eps=1e-6):
    if k_out.shape != k.shape or v_out.shape != v.shape:
        raise RuntimeError("k_out and v_out shapes must match k and v")


@torch.library.custom_op(
    add_op_namespace_prefix("qkv_split_norm_rope_bf16"), mutates_args=("q_out", "k_out")
)
def _qkv_split_norm_rope_bf16_op(
    packed_qkv: torch.Tensor, norm_q_weight: torch.Tensor, norm_k_weight: torch.Tensor,
    freqs_re: torch.Tensor, freqs_im: torch.Tensor, q_out: torch.Tensor, k_out: torch.Tensor,
    heads: int, head_dim: int, seq_len: int, eps: float = 1e-6,
) -> None:
    _launch_qkv(packed_qkv, norm_q_weight, norm_k_weight, freqs_re, freqs_im, q_out, k_out,
                heads, head_dim, seq_len, eps)


def _launch_qkv(packed_qkv, norm_q_weight, norm_k_weight, freqs_re, freqs_im, q_out, k_out,
                heads, head_dim, seq_len, eps):
    B, L, _ = packed_qkv.shape
    D = heads * head_dim
    block_t, block_p, num_warps, early = _qkv_launch_config(D, B * L, packed_qkv.device)
    pairs = [t.view(torch.int32) for t in (packed_qkv, norm_q_weight, norm_k_weight, q_out, k_out)]
    with device_guard(packed_qkv):
        _qkv_split_norm_rope_kernel[(cdiv(B * L, block_t),)](
            pairs[0], pairs[1], pairs[2], freqs_re, freqs_im, pairs[3], pairs[4],
            B * L, L, seq_len, eps, P=D // 2, HALF_HD=head_dim // 2, BLOCK_T=block_t,
            BLOCK_P=block_p, EARLY_LOADS=early, num_warps=num_warps,
        )


@torch.library.register_fake(add_op_namespace_prefix("qkv_split_norm_rope_bf16"))
def _qkv_split_norm_rope_bf16_fake(packed_qkv, norm_q_weight, norm_k_weight, freqs_re, freqs_im,
                                   q_out, k_out, heads, head_dim, seq_len, eps=1e-6):
    _check_qkv_shapes(packed_qkv, norm_q_weight, norm_k_weight, freqs_re, freqs_im,
                      q_out, k_out, heads, head_dim, seq_len)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def q_norm_rope_bf16(
    q: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
    out: Optional[torch.Tensor] = None, *, eps: float = 1e-6,
) -> torch.Tensor:
    """RMSNorm over each 128-wide row of ``q`` (fp32, weight as is), then
    rotate-half RoPE with one position's ``cos``/``sin`` (64,) for every row.

    q: bf16 (..., 128), ndim >= 2. Returns ``out`` (allocated if None).
    """
    named = [("q", q), ("weight", weight), ("cos", cos), ("sin", sin)]
    for name, t in named:
        check_tensor(t, name, _BF16)
    _check_decode_shapes(q, "q", weight, cos, sin)
    if out is None:
        out = torch.empty_like(q)
    check_tensor(out, "out", _BF16)
    check_shape(out, "out", q.shape, "out shape must match q shape")
    check_same_device(named + [("out", out)])
    if launch_directly(q):
        _launch_decode(q, weight, cos, sin, out, None, None, eps)
    else:
        _q_norm_rope_bf16_op(q, weight, cos, sin, out, eps)
    return out


def k_norm_rope_v_cache_bf16(
    k: torch.Tensor, v: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor,
    sin: torch.Tensor, k_out: Optional[torch.Tensor] = None,
    v_out: Optional[torch.Tensor] = None, *, eps: float = 1e-6,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``k_out`` = the ``q_norm_rope_bf16`` math on ``k``; ``v_out`` = bit copy of ``v``.

    Returns ``(k_out, v_out)`` (each allocated if None).
    """
    named = [("k", k), ("v", v), ("weight", weight), ("cos", cos), ("sin", sin)]
    for name, t in named:
        check_tensor(t, name, _BF16)
    _check_decode_shapes(k, "k", weight, cos, sin)
    check_shape(v, "v", k.shape, "v shape must match k shape")
    k_out = torch.empty_like(k) if k_out is None else k_out
    v_out = torch.empty_like(v) if v_out is None else v_out
    check_tensor(k_out, "k_out", _BF16)
    check_tensor(v_out, "v_out", _BF16)
    if k_out.shape != k.shape or v_out.shape != k.shape:
        raise RuntimeError(
            "k_out and v_out shapes must match k and v, got "
            f"{tuple(k_out.shape)} and {tuple(v_out.shape)} for {tuple(k.shape)}"
        )
    check_same_device(named + [("k_out", k_out), ("v_out", v_out)])
    if launch_directly(k):
        _launch_decode(k, weight, cos, sin, k_out, v, v_out, eps)
    else:
        _k_norm_rope_v_cache_bf16_op(k, v, weight, cos, sin, k_out, v_out, eps)
    return k_out, v_out


def qkv_split_norm_rope_bf16(
    packed_qkv: torch.Tensor, norm_q_weight: torch.Tensor, norm_k_weight: torch.Tensor,
    freqs_re: torch.Tensor, freqs_im: torch.Tensor, *, heads: int, head_dim: int,
    seq_len: Optional[int] = None, q_out: Optional[torch.Tensor] = None,
    k_out: Optional[torch.Tensor] = None, eps: float = 1e-6,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Split packed ``[Q | K | V]`` (B, L, 3*D), RMSNorm Q and K over the whole
    D = heads*head_dim hidden vector, rotate adjacent pairs of each head by
    ``freqs_re[t] + i*freqs_im[t]`` for tokens ``t < seq_len`` (default L), and
    store (B, L, heads, head_dim) bf16. V is ignored. Returns ``(q_out, k_out)``.
    """
    named = [("packed_qkv", packed_qkv), ("norm_q_weight", norm_q_weight),
             ("norm_k_weight", norm_k_weight)]
    for name, t in named:
        check_tensor(t, name, _BF16)
    check_tensor(freqs_re, "freqs_re", _FP32)
    check_tensor(freqs_im, "freqs_im", _FP32)
    if seq_len is None and packed_qkv.dim() == 3:
        seq_len = packed_qkv.shape[1]
    _check_qkv_shapes(packed_qkv, norm_q_weight, norm_k_weight, freqs_re, freqs_im,
                      q_out, k_out, heads, head_dim, seq_len)
    B, L, _ = packed_qkv.shape
    if q_out is None:
        q_out = packed_qkv.new_empty((B, L, heads, head_dim))
    if k_out is None:
        k_out = packed_qkv.new_empty((B, L, heads, head_dim))
    check_tensor(q_out, "q_out", _BF16)
    check_tensor(k_out, "k_out", _BF16)
    check_same_device(named + [("freqs_re", freqs_re), ("freqs_im", freqs_im),
                               ("q_out", q_out), ("k_out", k_out)])
    launch = _launch_qkv if launch_directly(packed_qkv) else _qkv_split_norm_rope_bf16_op
    launch(packed_qkv, norm_q_weight, norm_k_weight, freqs_re, freqs_im, q_out, k_out,
           heads, head_dim, seq_len, eps)
    return q_out, k_out
