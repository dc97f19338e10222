"""Q/K RMSNorm + RoPE families (spec: postprocess-norms.md §2, groups b, c, f).

Three Triton kernels serve nine public functions:

* ``_head_norm_rope_kernel``: per-head (128) RMSNorm + rotate-half RoPE on "head
  vectors" addressed by (row, head). Heads ``[0, NA)`` form section A (Q),
  heads ``[NA, NA+NB)`` section B (K, with an optional bit copy of V and an
  optional device-side destination row). Tables are either one position's
  half-width ``(64,)`` cos/sin shared by every vector (decode) or full-width
  ``(rows, 128)`` rows (``ROPE_HALF_FULL``). Serves the three decode functions,
  ``qkv_split_per_head_norm_rope_bf16`` and ``qk_norm_rope_strided_bf16``.
* ``_wan_qkv_kernel``: whole-hidden (Wan) RMSNorm of the Q and K sections of a
  packed row (optionally after adding a bias in fp32), interleaved RoPE from
  fp32 ``freqs_re/freqs_im`` for tokens ``t < rope_len``, optional V (bias added,
  or a bit copy), output rows placed at ``b*out_tokens + out_off + t`` (cat
  workspaces). Serves ``qkv_split_norm_rope_bf16``,
  ``qkv_split_bias_norm_rope_v_bf16``, its ``_cat`` twin and joint3 when
  ``JOINT3_ONE_LAUNCH`` is unset (one launch per segment).
* ``_wan_joint3_kernel``: joint3's three segments in one launch, the same tiles
  (``JOINT3_ONE_LAUNCH``, the default). Both Wan kernels run ``_wan_tile``.

Each public function validates (RuntimeError, before any allocation or
launch), allocates missing outputs, and launches directly when eager or
through its out-variant ``torch.library.custom_op`` when traced.
"""

import os
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ._common import (BF16, FP32, I32, check_freqs, check_qkv_common, row_config,
                      vector_config)
from ._helpers import enter_dependent_launch, rms_inv, rope_pair
from ._host import (cdiv, check_int, check_same_device, check_shape, check_tensor,
                    dependent_launch, device_guard, launch_directly)
from ._ops import add_op_namespace_prefix

HD128 = 128  # decode / per-head / strided kernels are fixed to head_dim 128 (spec)
_PTX = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") != "1")  # inline PTX runs


# ----------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------


@triton.jit(do_not_specialize=["n_rows", "max_dst"])
def _head_norm_rope_kernel(
    xa_ptr, xb_ptr, v_ptr, wa_ptr, wb_ptr, cos_ptr, sin_ptr, oa_ptr, ob_ptr, vo_ptr, pos_ptr,
    n_rows, xa_rs, xb_rs, xb_off, v_rs, v_off, oa_rs, ob_rs, tab_rs, max_dst, eps,
    NA: tl.constexpr, NB: tl.constexpr, HAS_V: tl.constexpr, HAS_POS: tl.constexpr,
    FULL_TABLE: tl.constexpr, BLOCK_V: tl.constexpr, HD: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """BLOCK_V head vectors (row r, head h) per program.

    A heads: x = xa[r*xa_rs + h*HD], out = oa[r*oa_rs + h*HD].
    B heads (hb = h - NA): x = xb[r*xb_rs + xb_off + hb*HD], out = ob[d*ob_rs + hb*HD]
    with d = r, or d = pos[0] (HAS_POS, written only when 0 <= d < max_dst);
    V (HAS_V) = v[r*v_rs + v_off + hb*HD] copied bit for bit to vo at the B address.
    """
    enter_dependent_launch(PDL)
    HALF: tl.constexpr = HD // 2
    H: tl.constexpr = NA + NB
    i_v = tl.program_id(0).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)
    m_v = i_v < n_rows * H
    r = i_v // H
    h = i_v % H
    is_b = h >= NA
    hb = h - NA
    o_h = tl.arange(0, HALF)[None, :]
    m = m_v[:, None]

    o_x = tl.where(is_b, r * xb_rs + xb_off + hb * HD, r * xa_rs + h * HD)[:, None] + o_h
    p_x = tl.where(is_b[:, None], xb_ptr + o_x, xa_ptr + o_x)
    b_lo = tl.load(p_x, mask=m, other=0.0).to(tl.float32)
    b_hi = tl.load(p_x + HALF, mask=m, other=0.0).to(tl.float32)
    p_w = tl.where(is_b[:, None], wb_ptr + o_h, wa_ptr + o_h)
    w_lo = tl.load(p_w, mask=m, other=0.0).to(tl.float32)
    w_hi = tl.load(p_w + HALF, mask=m, other=0.0).to(tl.float32)
    o_t = (r * tab_rs)[:, None] + o_h
    c_lo = tl.load(cos_ptr + o_t, mask=m, other=0.0).to(tl.float32)
    s_lo = tl.load(sin_ptr + o_t, mask=m, other=0.0).to(tl.float32)
    if FULL_TABLE:  # ROPE_HALF_FULL: each output element uses the entry at its own index
        c_hi = tl.load(cos_ptr + o_t + HALF, mask=m, other=0.0).to(tl.float32)
        s_hi = tl.load(sin_ptr + o_t + HALF, mask=m, other=0.0).to(tl.float32)
    else:
        c_hi = c_lo
        s_hi = s_lo
    if HAS_POS:  # device-side destination row (CUDA-graph replayable), bounds masked
        d = tl.load(pos_ptr).to(tl.int64)
        m_d = (d >= 0) & (d < max_dst)
    else:
        d = r
        m_d = r >= 0
    m_o = m & (~is_b | m_d)[:, None]
    if HAS_V:
        o_vd = tl.arange(0, HD)[None, :]
        m_vb = m_o & is_b[:, None]
        b_v = tl.load(v_ptr + (r * v_rs + v_off + hb * HD)[:, None] + o_vd, mask=m_vb)

    inv = rms_inv(tl.sum(b_lo * b_lo, 1) + tl.sum(b_hi * b_hi, 1), HD, eps)[:, None]
    n_lo = b_lo * inv * w_lo
    n_hi = b_hi * inv * w_hi
    y_lo = n_lo * c_lo - n_hi * s_lo
    y_hi = n_hi * c_hi + n_lo * s_hi

    o_ob = d * ob_rs + hb * HD
    o_o = tl.where(is_b, o_ob, r * oa_rs + h * HD)[:, None] + o_h
    p_o = tl.where(is_b[:, None], ob_ptr + o_o, oa_ptr + o_o)
    tl.store(p_o, y_lo.to(tl.bfloat16), mask=m_o)
    tl.store(p_o + HALF, y_hi.to(tl.bfloat16), mask=m_o)
    if HAS_V:
        tl.store(vo_ptr + o_ob[:, None] + o_vd, b_v, mask=m_vb)


@triton.jit
def _unpack_pairs(w, OPAQUE: tl.constexpr):
    """int32 pair words -> fp32 (elements 2p, 2p+1): a bf16 -> fp32 is a 16-bit shift.
    OPAQUE: through inline PTX, which the compiler does not merge with an earlier
    unpack of the same words (so only the words, not the fp32 halves, stay live);
    the interpreter, which runs no PTX, shifts as usual (same values)."""
    if OPAQUE and _PTX:
        a = tl.inline_asm_elementwise("shl.b32 $0, $1, 16;", "=r,r", [w], dtype=tl.float32,
                                      is_pure=True, pack=1)
        b = tl.inline_asm_elementwise("and.b32 $0, $1, -65536;", "=r,r", [w], dtype=tl.float32,
                                      is_pure=True, pack=1)
    else:
        a = (w << 16).to(tl.float32, bitcast=True)
        b = (w & -65536).to(tl.float32, bitcast=True)
    return a, b


@triton.jit
def _pack_pairs(a, b):
    """fp32 (even, odd) elements -> int32 words of two RN-rounded bf16."""
    a = a.to(tl.bfloat16).to(tl.int16, bitcast=True).to(tl.int32)
    b = b.to(tl.bfloat16).to(tl.int16, bitcast=True).to(tl.int32)
    return (a & 0xFFFF) | (b << 16)


@triton.jit
def _wan_words(x_ptr, i_t, m_t, o_p, P: tl.constexpr, SECTIONS: tl.constexpr):
    """The Q and K words [BLOCK_T, 2, chunk] of a chunk (SECTIONS 2), or its V words
    [BLOCK_T, chunk] (SECTIONS 1), as loaded."""
    m_p = o_p < P
    if SECTIONS == 2:
        o_s = tl.arange(0, 2)  # section: 0 = Q, 1 = K
        return tl.load(x_ptr + i_t[:, None, None] * (3 * P) + o_s[None, :, None] * P
                       + o_p[None, None, :], mask=m_t[:, None, None] & m_p[None, None, :],
                       other=0)
    else:
        return tl.load(x_ptr + i_t[:, None] * (3 * P) + 2 * P + o_p[None, :],
                       mask=m_t[:, None] & m_p[None, :], other=0)


@triton.jit
def _wan_bias_words(bias_ptr, o_p, P: tl.constexpr, SECTIONS: tl.constexpr):
    """The Q and K bias words [2, chunk] of a chunk (SECTIONS 2) or its V bias words
    [1, chunk] (SECTIONS 1)."""
    m_p = o_p < P
    if SECTIONS == 2:
        o_s = tl.arange(0, 2)
        return tl.load(bias_ptr + o_s[:, None] * P + o_p[None, :], mask=m_p[None, :], other=0)
    else:
        return tl.load(bias_ptr + 2 * P + o_p, mask=m_p, other=0)[None, :]


@triton.jit
def _wan_qk_halves(b_x, b_bias, HAS_BIAS: tl.constexpr, OPAQUE: tl.constexpr):
    """Q/K words as fp32 halves, the bias added in fp32 (not rounded)."""
    b_a, b_b = _unpack_pairs(b_x, OPAQUE)
    if HAS_BIAS:
        b_ba, b_bb = _unpack_pairs(b_bias, OPAQUE)
        b_a += b_ba[None, :, :]
        b_b += b_bb[None, :, :]
    return b_a, b_b


@triton.jit
def _wan_tables(wq_ptr, wk_ptr, fr_ptr, fi_ptr, t, rotate, o_p, P: tl.constexpr,
                HALF_HD: tl.constexpr):
    """A chunk's Q/K norm weight words and its tokens' RoPE factors."""
    o_s = tl.arange(0, 2)
    m_p = o_p < P
    p_w = tl.where(o_s[:, None] == 0, wq_ptr, wk_ptr) + o_p[None, :]
    b_w = tl.load(p_w, mask=m_p[None, :], other=0)[None, :, :]
    o_f = t[:, None] * HALF_HD + (o_p % HALF_HD)[None, :]
    m_f = rotate[:, None] & m_p[None, :]
    b_fr = tl.load(fr_ptr + o_f, mask=m_f, other=1.0)[:, None, :]
    b_fi = tl.load(fi_ptr + o_f, mask=m_f, other=0.0)[:, None, :]
    return b_w, b_fr, b_fi


@triton.jit
def _wan_tile(
    i_tile, x_ptr, bias_ptr, wq_ptr, wk_ptr, fr_ptr, fi_ptr, q_ptr, k_ptr, v_ptr,
    n_rows, seq_tokens, rope_len, out_tokens, out_off, eps,
    P: tl.constexpr, HALF_HD: tl.constexpr, BLOCK_T: tl.constexpr, CHUNK: tl.constexpr,
    N_CHUNKS: tl.constexpr, HOLD: tl.constexpr, EARLY_LOADS: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_V: tl.constexpr,
):
    """Tile ``i_tile``: BLOCK_T token rows x {Q, K} (+ V). Each section's P words come in
    N_CHUNKS chunks of CHUNK words: one power-of-two chunk (masked), or exactly
    P = N_CHUNKS x CHUNK. Pass 1 loads every chunk (and V) and sums the squares; pass 2
    normalizes, rotates and stores, from what HOLD kept across the reduction: 0 the
    fp32 halves, 1 the loaded words (unpacked again: fewer registers), 2 nothing (the
    chunk is loaded again, from cache). Same bits in every mode.

    bf16 tensors arrive viewed as int32 words, each one RoPE pair (element 2p in
    the low half, 2p+1 in the high half): 16-byte vector loads/stores, no
    shuffles. Input row i = b*seq_tokens + t is stored at output row
    b*out_tokens + out_off + t.
    """
    i_t = i_tile.to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    m_t = i_t < n_rows
    o_c = tl.arange(0, CHUNK)
    held, v_s, tables = (), (), ()
    for c in tl.static_range(N_CHUNKS):  # every chunk's loads before the reduction
        o_p = c * CHUNK + o_c
        b_x = _wan_words(x_ptr, i_t, m_t, o_p, P, 2)
        b_v = b_x  # placeholders without V / bias
        b_bias = b_x
        b_vbias = b_x
        if HAS_V:
            b_v = _wan_words(x_ptr, i_t, m_t, o_p, P, 1)
        if HAS_BIAS:
            b_bias = _wan_bias_words(bias_ptr, o_p, P, 2)
            if HAS_V:
                b_vbias = _wan_bias_words(bias_ptr, o_p, P, 1)
        if HAS_V:
            v_s = v_s + ((b_v, b_vbias),)
        if c == 0:
            t = i_t % seq_tokens
            rotate = m_t & (t < rope_len)
        if EARLY_LOADS:
            tables = tables + (_wan_tables(wq_ptr, wk_ptr, fr_ptr, fi_ptr, t, rotate, o_p, P,
                                           HALF_HD),)
        b_a, b_b = _wan_qk_halves(b_x, b_bias, HAS_BIAS, False)
        if c == 0:
            sum_sq = tl.sum(b_a * b_a + b_b * b_b, 2)
        else:
            sum_sq += tl.sum(b_a * b_a + b_b * b_b, 2)
        if HOLD == 0:
            held = held + ((b_a, b_b),)
        elif HOLD == 1:
            held = held + (b_x,)
    inv = rms_inv(sum_sq, 2 * P, eps)[:, :, None]

    o_row = (i_t // seq_tokens) * out_tokens + out_off + t
    o_s = tl.arange(0, 2)
    p_o = tl.where(o_s[None, :, None] == 0, q_ptr, k_ptr) + o_row[:, None, None] * P
    rot = rotate[:, None, None]
    for c in tl.static_range(N_CHUNKS):
        o_p = c * CHUNK + o_c
        m_p = o_p < P
        if HOLD == 0:
            b_a, b_b = held[c]
        else:  # the words held (1) or loaded again (2: never merged with the first load)
            if HOLD == 1:
                b_x = held[c]
            else:
                b_x = _wan_words(x_ptr, i_t, m_t, o_p, P, 2)
            b_bias = b_x  # placeholder without bias
            if HAS_BIAS:  # the bias is loaded again (from cache)
                b_bias = _wan_bias_words(bias_ptr, o_p, P, 2)
            b_a, b_b = _wan_qk_halves(b_x, b_bias, HAS_BIAS, HOLD == 1)
        if EARLY_LOADS:
            b_w, b_fr, b_fi = tables[c]
        else:
            b_w, b_fr, b_fi = _wan_tables(wq_ptr, wk_ptr, fr_ptr, fi_ptr, t, rotate, o_p, P,
                                          HALF_HD)
        w_a, w_b = _unpack_pairs(b_w, False)
        n_a = b_a * inv * w_a
        n_b = b_b * inv * w_b
        y_a, y_b = rope_pair(n_a, n_b, b_fr, b_fi)
        y = _pack_pairs(tl.where(rot, y_a, n_a), tl.where(rot, y_b, n_b))
        tl.store(p_o + o_p[None, None, :], y, mask=m_t[:, None, None] & m_p[None, None, :])
        if HAS_V:
            b_v, b_vbias = v_s[c]
            if HAS_BIAS:
                v_a, v_b = _unpack_pairs(b_v, False)
                vb_a, vb_b = _unpack_pairs(b_vbias, False)
                b_v = _pack_pairs(v_a + vb_a, v_b + vb_b)
            tl.store(v_ptr + o_row[:, None] * P + o_p[None, :], b_v,
                     mask=m_t[:, None] & m_p[None, :])


@triton.jit(do_not_specialize=["n_rows", "seq_tokens", "rope_len", "out_tokens", "out_off"])
def _wan_qkv_kernel(
    x_ptr, bias_ptr, wq_ptr, wk_ptr, fr_ptr, fi_ptr, q_ptr, k_ptr, v_ptr,
    n_rows, seq_tokens, rope_len, out_tokens, out_off, eps,
    P: tl.constexpr, HALF_HD: tl.constexpr, BLOCK_T: tl.constexpr, CHUNK: tl.constexpr,
    N_CHUNKS: tl.constexpr, HOLD: tl.constexpr, EARLY_LOADS: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_V: tl.constexpr, PDL: tl.constexpr = False,
):
    """One packed input: program i takes tile i (``_wan_tile``)."""
    enter_dependent_launch(PDL)
    _wan_tile(tl.program_id(0), x_ptr, bias_ptr, wq_ptr, wk_ptr, fr_ptr, fi_ptr, q_ptr, k_ptr,
              v_ptr, n_rows, seq_tokens, rope_len, out_tokens, out_off, eps, P, HALF_HD,
              BLOCK_T, CHUNK, N_CHUNKS, HOLD, EARLY_LOADS, HAS_BIAS, HAS_V)


@triton.jit(do_not_specialize=["B", "L_v", "L_a", "L_u", "rope_len"])
def _wan_joint3_kernel(
    xv_ptr, bias_ptr, wvq_ptr, wvk_ptr, fr_ptr, fi_ptr, xa_ptr, waq_ptr, wak_ptr, xu_ptr,
    wuq_ptr, wuk_ptr, q_ptr, k_ptr, v_ptr, B, L_v, L_a, L_u, rope_len, eps_v, eps_a, eps_u,
    P: tl.constexpr, HALF_HD: tl.constexpr, BLOCK_T: tl.constexpr, CHUNK: tl.constexpr,
    N_CHUNKS: tl.constexpr, HOLD: tl.constexpr, EARLY_LOADS: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """The three joint3 segments in one launch: the video tiles first (bias, RoPE for
    t < rope_len, V + bias), then action and und (no bias, no RoPE, V copied), each
    written at its row offset of the (L_v + L_a + L_u)-row workspaces; the same tiles
    as one launch per segment (each over its B x L rows), so the same bits. One table
    placement for all three (the video's: early loads in the short segments' branches
    alone would raise the registers of the whole kernel, sm_90 offline: 128 against 106
    at D = 3072)."""
    enter_dependent_launch(PDL)
    pid = tl.program_id(0)
    n_v = tl.cdiv(B * L_v, BLOCK_T)
    n_a = tl.cdiv(B * L_a, BLOCK_T)
    total = L_v + L_a + L_u
    if pid < n_v:
        _wan_tile(pid, xv_ptr, bias_ptr, wvq_ptr, wvk_ptr, fr_ptr, fi_ptr, q_ptr, k_ptr, v_ptr,
                  B * L_v, L_v, rope_len, total, 0, eps_v, P, HALF_HD, BLOCK_T, CHUNK, N_CHUNKS,
                  HOLD, EARLY_LOADS, True, True)
    elif pid < n_v + n_a:
        _wan_tile(pid - n_v, xa_ptr, xa_ptr, waq_ptr, wak_ptr, fr_ptr, fi_ptr, q_ptr, k_ptr,
                  v_ptr, B * L_a, L_a, 0, total, L_v, eps_a, P, HALF_HD, BLOCK_T, CHUNK, N_CHUNKS,
                  HOLD, EARLY_LOADS, False, True)
    else:
        _wan_tile(pid - n_v - n_a, xu_ptr, xu_ptr, wuq_ptr, wuk_ptr, fr_ptr, fi_ptr, q_ptr,
                  k_ptr, v_ptr, B * L_u, L_u, 0, total, L_v + L_a, eps_u, P, HALF_HD, BLOCK_T,
                  CHUNK, N_CHUNKS, HOLD, EARLY_LOADS, False, True)


# ----------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------


def _launch_heads(*, n_rows, NA, NB, xa, xb, wa, wb, cos, sin, oa, ob, eps, xa_rs=0, xb_rs=0,
                  xb_off=0, oa_rs=0, ob_rs=0, tab_rs=0, full_table=False, v=None, v_rs=0,
                  v_off=0, vo=None, pos=None, max_dst=0):
    block_v, num_warps = vector_config(n_rows * (NA + NB), HD128, xa.device)
    grid = (cdiv(n_rows * (NA + NB), block_v),)
    with device_guard(xa):
        _head_norm_rope_kernel[grid](
            xa, xb, xa if v is None else v, wa, wb, cos, sin, oa, ob,
            oa if vo is None else vo, cos if pos is None else pos,
            n_rows, xa_rs, xb_rs, xb_off, v_rs, v_off, oa_rs, ob_rs, tab_rs, max_dst, eps,
            NA=NA, NB=NB, HAS_V=v is not None, HAS_POS=pos is not None, FULL_TABLE=full_table,
            BLOCK_V=block_v, HD=HD128, num_warps=num_warps, **dependent_launch(xa.device),
        )


def _wan_launch_args(cfg, D, head_dim):
    """The launch settings both Wan kernels take from a ``WanConfig``."""
    return dict(P=D // 2, HALF_HD=head_dim // 2, BLOCK_T=cfg.block_t, CHUNK=cfg.chunk,
                N_CHUNKS=cfg.n_chunks, HOLD=cfg.hold, EARLY_LOADS=cfg.early,
                num_warps=cfg.num_warps)


def _launch_wan(packed, bias, wq, wk, freqs_re, freqs_im, q, k, v, heads, head_dim, rope_len,
                eps, out_tokens=None, out_off=0):
    """One launch of the whole-hidden kernel under ``row_config``; returns the launched
    kernel (the tune script reads its registers)."""
    B, L, _ = packed.shape
    D = heads * head_dim
    cfg = row_config(D, B * L, packed.device)
    i32 = [None if t is None else t.view(torch.int32) for t in (packed, bias, wq, wk, q, k, v)]
    x32, b32, wq32, wk32, q32, k32, v32 = i32
    with device_guard(packed):
        return _wan_qkv_kernel[(cdiv(B * L, cfg.block_t),)](
            x32, x32 if b32 is None else b32, wq32, wk32, freqs_re, freqs_im, q32, k32,
            q32 if v32 is None else v32, B * L, L, rope_len, L if out_tokens is None else out_tokens,
            out_off, eps, HAS_BIAS=bias is not None, HAS_V=v is not None,
            **_wan_launch_args(cfg, D, head_dim), **dependent_launch(packed.device),
        )


# ----------------------------------------------------------------------------
# Shape checks (wrappers and fakes)
# ----------------------------------------------------------------------------


def _check_decode_x(x, name, what):
    if x.dim() != 2 or x.shape[1] != HD128 or x.shape[0] == 0:
        raise RuntimeError(f"{name} must have shape ({what}, 128) with {what} > 0, "
                           f"got {tuple(x.shape)}")


def _check_decode_tables(weight, w_name, cos, sin):
    check_shape(weight, w_name, (HD128,))
    check_shape(cos, "cos", (HD128 // 2,))
    check_shape(sin, "sin", (HD128 // 2,))


def _check_devpos(k_pre, v_pre, weight, cos, sin, cur_pos, k_cache, v_cache):
    _check_decode_x(k_pre, "k_pre", "n_kv_heads")
    check_shape(v_pre, "v_pre", k_pre.shape, "v_pre shape must match k_pre shape")
    _check_decode_tables(weight, "k_norm_weight", cos, sin)
    if cur_pos.numel() != 1:
        raise RuntimeError(f"cur_pos must contain one int32 element, got {cur_pos.numel()}")
    n_kv = k_pre.shape[0]
    if k_cache.dim() != 3 or k_cache.shape[1] != n_kv or k_cache.shape[2] != HD128:
        raise RuntimeError(f"k_cache must have shape (max_seq_len, {n_kv}, 128), "
                           f"got {tuple(k_cache.shape)}")
    check_shape(v_cache, "v_cache", k_cache.shape, "v_cache shape must match k_cache shape")


def _check_per_head(packed, wq, wk, cos, sin, q_heads, kv_heads, q_out, k_out, v_out):
    if packed.dim() != 3 or packed.shape[0] == 0 or packed.shape[1] == 0:
        raise RuntimeError(f"packed_qkv must be a non-empty (B, S, width) tensor, "
                           f"got {tuple(packed.shape)}")
    check_int(q_heads, "q_heads", minimum=1)
    check_int(kv_heads, "kv_heads", minimum=1)
    B, S, width = packed.shape
    if width != (q_heads + 2 * kv_heads) * HD128:
        raise RuntimeError(f"packed_qkv last dimension must be (q_heads + 2 * kv_heads) * 128 "
                           f"= {(q_heads + 2 * kv_heads) * HD128}, got {width}")
    check_shape(wq, "q_norm_weight", (HD128,))
    check_shape(wk, "k_norm_weight", (HD128,))
    check_shape(cos, "cos", (B, S, HD128))
    check_shape(sin, "sin", (B, S, HD128))
    for name, t, heads in (("q_out", q_out, q_heads), ("k_out", k_out, kv_heads),
                           ("v_out", v_out, kv_heads)):
        if t is not None:
            check_shape(t, name, (B, S, heads, HD128))


def _check_strided(q_in, k_in, wq, wk, cos, sin, q_heads, k_heads, q_out, k_out):
    if q_in.dim() != 2 or k_in.dim() != 2:
        raise RuntimeError(f"q_in and k_in must be 2-D (rows, width), got {q_in.dim()} and "
                           f"{k_in.dim()} dimensions")
    if q_in.shape[0] != k_in.shape[0] or q_in.shape[0] == 0:
        raise RuntimeError(f"q_in and k_in must have the same non-zero number of rows, got "
                           f"{q_in.shape[0]} and {k_in.shape[0]}")
    check_int(q_heads, "q_heads", minimum=1)
    check_int(k_heads, "k_heads", minimum=1)
    if q_in.shape[1] < q_heads * HD128 or k_in.shape[1] < k_heads * HD128:
        raise RuntimeError(f"input row widths must cover heads * 128: q_in {q_in.shape[1]} for "
                           f"{q_heads} heads, k_in {k_in.shape[1]} for {k_heads} heads")
    rows = q_in.shape[0]
    check_shape(wq, "q_weight", (HD128,))
    check_shape(wk, "k_weight", (HD128,))
    check_shape(cos, "cos", (rows, HD128))
    check_shape(sin, "sin", (rows, HD128))
    if q_out is not None:
        check_shape(q_out, "q_out", (rows, q_heads, HD128))
    if k_out is not None:
        check_shape(k_out, "k_out", (rows, k_heads, HD128))


def _check_wan(packed, bias, wq, wk, freqs_re, freqs_im, heads, head_dim, rope_seq_len, outs):
    D = check_qkv_common(packed, "packed_qkv", wq, "norm_q_weight", wk, "norm_k_weight",
                         heads, head_dim)
    if bias is not None:
        check_shape(bias, "qkv_bias", (3 * D,))
    check_freqs(freqs_re, freqs_im, head_dim, rope_seq_len, packed.shape[1])
    B, S, _ = packed.shape
    for name, t in outs:
        if t is not None:
            check_shape(t, name, (B, S, heads, head_dim))


def _check_cat(packed, bias, wq, wk, freqs_re, freqs_im, heads, head_dim, video_offset,
               rope_seq_len, q_cat, k_cat, v_cat):
    _check_wan(packed, bias, wq, wk, freqs_re, freqs_im, heads, head_dim, rope_seq_len, ())
    if q_cat.dim() != 4:
        raise RuntimeError(f"q_cat_out must have 4 dimensions, got {q_cat.dim()}")
    B, S, _ = packed.shape
    total = q_cat.shape[1]
    check_int(video_offset, "video_offset", minimum=0)
    if video_offset + S > total:
        raise RuntimeError(f"video_offset + seq_len must be <= q_cat_out.shape[1] = {total}, "
                           f"got {video_offset} + {S}")
    for name, t in (("q_cat_out", q_cat), ("k_cat_out", k_cat), ("v_cat_out", v_cat)):
        check_shape(t, name, (B, total, heads, head_dim))


def _check_joint3(segments, bias, freqs_re, freqs_im, heads, head_dim, rope_seq_len, cats):
    """segments: [(prefix, packed, wq, wk)] for video, action, und."""
    for prefix, packed, wq, wk in segments:
        check_qkv_common(packed, f"packed_{prefix}", wq, f"norm_{prefix}_q_weight", wk,
                         f"norm_{prefix}_k_weight", heads, head_dim)
    B = segments[0][1].shape[0]
    if any(p.shape[0] != B for _, p, _, _ in segments):
        raise RuntimeError("packed_v, packed_a and packed_u must have the same batch size, got "
                           + ", ".join(str(p.shape[0]) for _, p, _, _ in segments))
    D = heads * head_dim
    check_shape(bias, "qkv_v_bias", (3 * D,))
    L_v = segments[0][1].shape[1]
    check_int(rope_seq_len, "rope_seq_len", minimum=0)
    if rope_seq_len > L_v:
        raise RuntimeError(f"rope_seq_len must be in [0, packed_v.shape[1]] (= {L_v}), "
                           f"got {rope_seq_len}")
    check_freqs(freqs_re, freqs_im, head_dim, rope_seq_len, L_v)
    total = sum(p.shape[1] for _, p, _, _ in segments)
    for name, t in cats:
        check_shape(t, name, (B, total, heads, head_dim))


# ----------------------------------------------------------------------------
# Ops (out-variant, void) + fakes
# ----------------------------------------------------------------------------


def _run_decode_q(q_pre, w, cos, sin, eps, q_out):
    _launch_heads(n_rows=1, NA=q_pre.shape[0], NB=0, xa=q_pre, xb=q_pre, wa=w, wb=w, cos=cos,
                  sin=sin, oa=q_out, ob=q_out, eps=eps)


@torch.library.custom_op(add_op_namespace_prefix("decode_q_norm_rope_stage_bf16"),
                         mutates_args=("q_out",))
def _decode_q_op(q_pre: torch.Tensor, q_norm_weight: torch.Tensor, cos: torch.Tensor,
                 sin: torch.Tensor, eps: float, q_out: torch.Tensor) -> None:
    _run_decode_q(q_pre, q_norm_weight, cos, sin, eps, q_out)


@torch.library.register_fake(add_op_namespace_prefix("decode_q_norm_rope_stage_bf16"))
def _decode_q_fake(q_pre, q_norm_weight, cos, sin, eps, q_out):
    _check_decode_x(q_pre, "q_pre", "n_q_heads")
    _check_decode_tables(q_norm_weight, "q_norm_weight", cos, sin)
    check_shape(q_out, "q_out", q_pre.shape, "q_out shape must match q_pre shape")


def _run_decode_k(k_pre, v_pre, w, cos, sin, eps, k_dst, v_dst):
    _launch_heads(n_rows=1, NA=0, NB=k_pre.shape[0], xa=k_pre, xb=k_pre, wa=w, wb=w, cos=cos,
                  sin=sin, oa=k_dst, ob=k_dst, eps=eps, v=v_pre, vo=v_dst)


@torch.library.custom_op(add_op_namespace_prefix("decode_k_norm_rope_kvwrite_bf16"),
                         mutates_args=("k_cache_dst", "v_cache_dst"))
def _decode_k_op(k_pre: torch.Tensor, v_pre: torch.Tensor, k_norm_weight: torch.Tensor,
                 cos: torch.Tensor, sin: torch.Tensor, eps: float, k_cache_dst: torch.Tensor,
                 v_cache_dst: torch.Tensor) -> None:
    _run_decode_k(k_pre, v_pre, k_norm_weight, cos, sin, eps, k_cache_dst, v_cache_dst)


@torch.library.register_fake(add_op_namespace_prefix("decode_k_norm_rope_kvwrite_bf16"))
def _decode_k_fake(k_pre, v_pre, k_norm_weight, cos, sin, eps, k_cache_dst, v_cache_dst):
    _check_decode_x(k_pre, "k_pre", "n_kv_heads")
    _check_decode_tables(k_norm_weight, "k_norm_weight", cos, sin)
    for name, t in (("v_pre", v_pre), ("k_cache_dst", k_cache_dst), ("v_cache_dst", v_cache_dst)):
        check_shape(t, name, k_pre.shape, f"{name} shape must match k_pre shape")


def _run_devpos(k_pre, v_pre, w, cos, sin, cur_pos, eps, k_cache, v_cache):
    _launch_heads(n_rows=1, NA=0, NB=k_pre.shape[0], xa=k_pre, xb=k_pre, wa=w, wb=w, cos=cos,
                  sin=sin, oa=k_cache, ob=k_cache, ob_rs=k_pre.shape[0] * HD128, eps=eps,
                  v=v_pre, vo=v_cache, pos=cur_pos, max_dst=k_cache.shape[0])


@torch.library.custom_op(add_op_namespace_prefix("decode_k_norm_rope_kvwrite_devpos_bf16"),
                         mutates_args=("k_cache", "v_cache"))
def _devpos_op(k_pre: torch.Tensor, v_pre: torch.Tensor, k_norm_weight: torch.Tensor,
               cos: torch.Tensor, sin: torch.Tensor, cur_pos: torch.Tensor, eps: float,
               k_cache: torch.Tensor, v_cache: torch.Tensor) -> None:
    _run_devpos(k_pre, v_pre, k_norm_weight, cos, sin, cur_pos, eps, k_cache, v_cache)


@torch.library.register_fake(add_op_namespace_prefix("decode_k_norm_rope_kvwrite_devpos_bf16"))
def _devpos_fake(k_pre, v_pre, k_norm_weight, cos, sin, cur_pos, eps, k_cache, v_cache):
    _check_devpos(k_pre, v_pre, k_norm_weight, cos, sin, cur_pos, k_cache, v_cache)


def _run_per_head(packed, wq, wk, cos, sin, q_heads, kv_heads, eps, q_out, k_out, v_out):
    B, S, W = packed.shape
    _launch_heads(n_rows=B * S, NA=q_heads, NB=kv_heads, xa=packed, xb=packed, wa=wq, wb=wk,
                  cos=cos, sin=sin, oa=q_out, ob=k_out, eps=eps, xa_rs=W, xb_rs=W,
                  xb_off=q_heads * HD128, oa_rs=q_heads * HD128, ob_rs=kv_heads * HD128,
                  tab_rs=HD128, full_table=True, v=packed, v_rs=W,
                  v_off=(q_heads + kv_heads) * HD128, vo=v_out)


@torch.library.custom_op(add_op_namespace_prefix("qkv_split_per_head_norm_rope_bf16"),
                         mutates_args=("q_out", "k_out", "v_out"))
def _per_head_op(packed_qkv: torch.Tensor, q_norm_weight: torch.Tensor,
                 k_norm_weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, q_heads: int,
                 kv_heads: int, eps: float, q_out: torch.Tensor, k_out: torch.Tensor,
                 v_out: torch.Tensor) -> None:
    _run_per_head(packed_qkv, q_norm_weight, k_norm_weight, cos, sin, q_heads, kv_heads, eps,
                  q_out, k_out, v_out)


@torch.library.register_fake(add_op_namespace_prefix("qkv_split_per_head_norm_rope_bf16"))
def _per_head_fake(packed_qkv, q_norm_weight, k_norm_weight, cos, sin, q_heads, kv_heads, eps,
                   q_out, k_out, v_out):
    _check_per_head(packed_qkv, q_norm_weight, k_norm_weight, cos, sin, q_heads, kv_heads,
                    q_out, k_out, v_out)


def _run_strided(q_in, k_in, wq, wk, cos, sin, q_heads, k_heads, eps, q_out, k_out):
    _launch_heads(n_rows=q_in.shape[0], NA=q_heads, NB=k_heads, xa=q_in, xb=k_in, wa=wq, wb=wk,
                  cos=cos, sin=sin, oa=q_out, ob=k_out, eps=eps, xa_rs=q_in.shape[1],
                  xb_rs=k_in.shape[1], oa_rs=q_heads * HD128, ob_rs=k_heads * HD128,
                  tab_rs=HD128, full_table=True)


@torch.library.custom_op(add_op_namespace_prefix("qk_norm_rope_strided_bf16"),
                         mutates_args=("q_out", "k_out"))
def _strided_op(q_in: torch.Tensor, k_in: torch.Tensor, q_weight: torch.Tensor,
                k_weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, q_heads: int,
                k_heads: int, eps: float, q_out: torch.Tensor, k_out: torch.Tensor) -> None:
    _run_strided(q_in, k_in, q_weight, k_weight, cos, sin, q_heads, k_heads, eps, q_out, k_out)


@torch.library.register_fake(add_op_namespace_prefix("qk_norm_rope_strided_bf16"))
def _strided_fake(q_in, k_in, q_weight, k_weight, cos, sin, q_heads, k_heads, eps, q_out, k_out):
    _check_strided(q_in, k_in, q_weight, k_weight, cos, sin, q_heads, k_heads, q_out, k_out)


@torch.library.custom_op(add_op_namespace_prefix("qkv_split_norm_rope_bf16"),
                         mutates_args=("q_out", "k_out"))
def _norm_rope_op(packed_qkv: torch.Tensor, norm_q_weight: torch.Tensor,
                  norm_k_weight: torch.Tensor, freqs_re: torch.Tensor, freqs_im: torch.Tensor,
                  heads: int, head_dim: int, rope_seq_len: int, eps: float, q_out: torch.Tensor,
                  k_out: torch.Tensor) -> None:
    _launch_wan(packed_qkv, None, norm_q_weight, norm_k_weight, freqs_re, freqs_im, q_out, k_out,
                None, heads, head_dim, rope_seq_len, eps)


@torch.library.register_fake(add_op_namespace_prefix("qkv_split_norm_rope_bf16"))
def _norm_rope_fake(packed_qkv, norm_q_weight, norm_k_weight, freqs_re, freqs_im, heads,
                    head_dim, rope_seq_len, eps, q_out, k_out):
    _check_wan(packed_qkv, None, norm_q_weight, norm_k_weight, freqs_re, freqs_im, heads,
               head_dim, rope_seq_len, (("q_out", q_out), ("k_out", k_out)))


@torch.library.custom_op(add_op_namespace_prefix("qkv_split_bias_norm_rope_v_bf16"),
                         mutates_args=("q_out", "k_out", "v_out"))
def _bias_norm_rope_v_op(packed_qkv: torch.Tensor, qkv_bias: torch.Tensor,
                         norm_q_weight: torch.Tensor, norm_k_weight: torch.Tensor,
                         freqs_re: torch.Tensor, freqs_im: torch.Tensor, heads: int,
                         head_dim: int, rope_seq_len: int, eps: float, q_out: torch.Tensor,
                         k_out: torch.Tensor, v_out: torch.Tensor) -> None:
    _launch_wan(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im, q_out,
                k_out, v_out, heads, head_dim, rope_seq_len, eps)


@torch.library.register_fake(add_op_namespace_prefix("qkv_split_bias_norm_rope_v_bf16"))
def _bias_norm_rope_v_fake(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re,
                           freqs_im, heads, head_dim, rope_seq_len, eps, q_out, k_out, v_out):
    _check_wan(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im, heads,
               head_dim, rope_seq_len, (("q_out", q_out), ("k_out", k_out), ("v_out", v_out)))


@torch.library.custom_op(add_op_namespace_prefix("qkv_split_bias_norm_rope_v_cat_bf16"),
                         mutates_args=("q_cat_out", "k_cat_out", "v_cat_out"))
def _cat_op(packed_qkv: torch.Tensor, qkv_bias: torch.Tensor, norm_q_weight: torch.Tensor,
            norm_k_weight: torch.Tensor, freqs_re: torch.Tensor, freqs_im: torch.Tensor,
            heads: int, head_dim: int, video_offset: int, rope_seq_len: int, eps: float,
            q_cat_out: torch.Tensor, k_cat_out: torch.Tensor, v_cat_out: torch.Tensor) -> None:
    _launch_wan(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im,
                q_cat_out, k_cat_out, v_cat_out, heads, head_dim, rope_seq_len, eps,
                out_tokens=q_cat_out.shape[1], out_off=video_offset)


@torch.library.register_fake(add_op_namespace_prefix("qkv_split_bias_norm_rope_v_cat_bf16"))
def _cat_fake(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im, heads,
              head_dim, video_offset, rope_seq_len, eps, q_cat_out, k_cat_out, v_cat_out):
    _check_cat(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im, heads,
               head_dim, video_offset, rope_seq_len, q_cat_out, k_cat_out, v_cat_out)


# The three segments in one launch (H200, tune_qkv.py --joint3, L = 2520 / 16 / 16, 24
# heads: 28.70 us against 32.48 for one launch per segment; the two 16-row launches were
# most of the difference).
JOINT3_ONE_LAUNCH = True


def _run_joint3(packed_v, bias, wvq, wvk, freqs_re, freqs_im, packed_a, waq, wak, packed_u, wuq,
                wuk, heads, head_dim, rope_seq_len, eps_v, eps_a, eps_u, q_cat, k_cat, v_cat,
                one_launch=None):
    """One launch per segment, or (``one_launch``, default ``JOINT3_ONE_LAUNCH``) all three
    in ``_wan_joint3_kernel``: the tiles and bits of the per-segment launches."""
    B, L_v = packed_v.shape[:2]
    L_a, L_u = packed_a.shape[1], packed_u.shape[1]
    if JOINT3_ONE_LAUNCH if one_launch is None else one_launch:
        D = heads * head_dim
        cfg_v = row_config(D, B * L_v, packed_v.device)
        i32 = [t.view(torch.int32) for t in (packed_v, bias, wvq, wvk, packed_a, waq, wak,
                                             packed_u, wuq, wuk, q_cat, k_cat, v_cat)]
        grid = (sum(cdiv(B * L, cfg_v.block_t) for L in (L_v, L_a, L_u)),)
        with device_guard(packed_v):
            _wan_joint3_kernel[grid](
                *i32[:4], freqs_re, freqs_im, *i32[4:], B, L_v, L_a, L_u, rope_seq_len, eps_v,
                eps_a, eps_u, **_wan_launch_args(cfg_v, D, head_dim),
                **dependent_launch(packed_v.device),
            )
        return
    total = L_v + L_a + L_u  # the workspaces' rows (checked)
    _launch_wan(packed_v, bias, wvq, wvk, freqs_re, freqs_im, q_cat, k_cat, v_cat, heads,
                head_dim, rope_seq_len, eps_v, out_tokens=total, out_off=0)
    # action / und: no bias, no RoPE (rope_len 0: the table is never read), V copied raw
    _launch_wan(packed_a, None, waq, wak, freqs_re, freqs_im, q_cat, k_cat, v_cat, heads,
                head_dim, 0, eps_a, out_tokens=total, out_off=L_v)
    _launch_wan(packed_u, None, wuq, wuk, freqs_re, freqs_im, q_cat, k_cat, v_cat, heads,
                head_dim, 0, eps_u, out_tokens=total, out_off=L_v + L_a)


@torch.library.custom_op(add_op_namespace_prefix("qkv_split_joint3_cat_bf16"),
                         mutates_args=("q_cat_out", "k_cat_out", "v_cat_out"))
def _joint3_op(packed_v: torch.Tensor, qkv_v_bias: torch.Tensor, norm_v_q_weight: torch.Tensor,
               norm_v_k_weight: torch.Tensor, freqs_re: torch.Tensor, freqs_im: torch.Tensor,
               packed_a: torch.Tensor, norm_a_q_weight: torch.Tensor,
               norm_a_k_weight: torch.Tensor, packed_u: torch.Tensor,
               norm_u_q_weight: torch.Tensor, norm_u_k_weight: torch.Tensor, heads: int,
               head_dim: int, rope_seq_len: int, eps_v: float, eps_a: float, eps_u: float,
               q_cat_out: torch.Tensor, k_cat_out: torch.Tensor, v_cat_out: torch.Tensor) -> None:
    _run_joint3(packed_v, qkv_v_bias, norm_v_q_weight, norm_v_k_weight, freqs_re, freqs_im,
                packed_a, norm_a_q_weight, norm_a_k_weight, packed_u, norm_u_q_weight,
                norm_u_k_weight, heads, head_dim, rope_seq_len, eps_v, eps_a, eps_u,
                q_cat_out, k_cat_out, v_cat_out)


@torch.library.register_fake(add_op_namespace_prefix("qkv_split_joint3_cat_bf16"))
def _joint3_fake(packed_v, qkv_v_bias, norm_v_q_weight, norm_v_k_weight, freqs_re, freqs_im,
                 packed_a, norm_a_q_weight, norm_a_k_weight, packed_u, norm_u_q_weight,
                 norm_u_k_weight, heads, head_dim, rope_seq_len, eps_v, eps_a, eps_u,
                 q_cat_out, k_cat_out, v_cat_out):
    _check_joint3([("v", packed_v, norm_v_q_weight, norm_v_k_weight),
                   ("a", packed_a, norm_a_q_weight, norm_a_k_weight),
                   ("u", packed_u, norm_u_q_weight, norm_u_k_weight)], qkv_v_bias, freqs_re,
                  freqs_im, heads, head_dim, rope_seq_len,
                  (("q_cat_out", q_cat_out), ("k_cat_out", k_cat_out), ("v_cat_out", v_cat_out)))


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def _dtypes(named):
    for name, t, dtype in named:
        check_tensor(t, name, dtype)


def decode_q_norm_rope_stage_bf16(
    q_pre: torch.Tensor, q_norm_weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
    eps: float = 1e-6, q_out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Decode Q: per head (128) RMSNorm + rotate-half RoPE with one position's
    half tables ``cos``/``sin`` (64,). ``q_pre``: (n_q_heads, 128) bf16."""
    named = [("q_pre", q_pre, BF16), ("q_norm_weight", q_norm_weight, BF16),
             ("cos", cos, BF16), ("sin", sin, BF16)]
    _dtypes(named)
    _check_decode_x(q_pre, "q_pre", "n_q_heads")
    _check_decode_tables(q_norm_weight, "q_norm_weight", cos, sin)
    if q_out is None:
        q_out = torch.empty_like(q_pre)
    check_tensor(q_out, "q_out", BF16)
    check_shape(q_out, "q_out", q_pre.shape, "q_out shape must match q_pre shape")
    check_same_device([(n, t) for n, t, _ in named] + [("q_out", q_out)])
    run = _run_decode_q if launch_directly(q_pre) else _decode_q_op
    run(q_pre, q_norm_weight, cos, sin, eps, q_out)
    return q_out


def decode_k_norm_rope_kvwrite_bf16(
    k_pre: torch.Tensor, v_pre: torch.Tensor, k_norm_weight: torch.Tensor, cos: torch.Tensor,
    sin: torch.Tensor, eps: float = 1e-6, k_cache_dst: Optional[torch.Tensor] = None,
    v_cache_dst: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Decode K (same math as Q) into ``k_cache_dst``; ``v_cache_dst`` = bit copy
    of ``v_pre``. All (n_kv_heads, 128) bf16 (dsts: a cache-slot view)."""
    named = [("k_pre", k_pre, BF16), ("v_pre", v_pre, BF16), ("k_norm_weight", k_norm_weight, BF16),
             ("cos", cos, BF16), ("sin", sin, BF16)]
    _dtypes(named)
    _check_decode_x(k_pre, "k_pre", "n_kv_heads")
    check_shape(v_pre, "v_pre", k_pre.shape, "v_pre shape must match k_pre shape")
    _check_decode_tables(k_norm_weight, "k_norm_weight", cos, sin)
    k_cache_dst = torch.empty_like(k_pre) if k_cache_dst is None else k_cache_dst
    v_cache_dst = torch.empty_like(v_pre) if v_cache_dst is None else v_cache_dst
    for name, t in (("k_cache_dst", k_cache_dst), ("v_cache_dst", v_cache_dst)):
        check_tensor(t, name, BF16)
        check_shape(t, name, k_pre.shape, f"{name} shape must match k_pre shape")
    check_same_device([(n, t) for n, t, _ in named] + [("k_cache_dst", k_cache_dst),
                                                       ("v_cache_dst", v_cache_dst)])
    run = _run_decode_k if launch_directly(k_pre) else _decode_k_op
    run(k_pre, v_pre, k_norm_weight, cos, sin, eps, k_cache_dst, v_cache_dst)
    return k_cache_dst, v_cache_dst


def decode_k_norm_rope_kvwrite_devpos_bf16(
    k_pre: torch.Tensor, v_pre: torch.Tensor, k_norm_weight: torch.Tensor, cos: torch.Tensor,
    sin: torch.Tensor, cur_pos: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    eps: float = 1e-6,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Decode K/V write at a device-side position: ``k_cache[cur_pos] =
    norm-rope(k_pre)``, ``v_cache[cur_pos] = v_pre``; every other slot untouched.

    ``cur_pos`` (int32, one element) is read inside the kernel (no host sync;
    CUDA-graph replayable). A position outside ``[0, k_cache.shape[0])`` writes
    nothing (masked on the device): the caches are left untouched.
    """
    named = [("k_pre", k_pre, BF16), ("v_pre", v_pre, BF16), ("k_norm_weight", k_norm_weight, BF16),
             ("cos", cos, BF16), ("sin", sin, BF16), ("cur_pos", cur_pos, I32),
             ("k_cache", k_cache, BF16), ("v_cache", v_cache, BF16)]
    _dtypes(named)
    _check_devpos(k_pre, v_pre, k_norm_weight, cos, sin, cur_pos, k_cache, v_cache)
    check_same_device([(n, t) for n, t, _ in named])
    run = _run_devpos if launch_directly(k_pre) else _devpos_op
    run(k_pre, v_pre, k_norm_weight, cos, sin, cur_pos, eps, k_cache, v_cache)
    return k_cache, v_cache


def qkv_split_per_head_norm_rope_bf16(
    packed_qkv: torch.Tensor, q_norm_weight: torch.Tensor, k_norm_weight: torch.Tensor,
    cos: torch.Tensor, sin: torch.Tensor, q_heads: int, kv_heads: int, eps: float = 1e-6,
    q_out: Optional[torch.Tensor] = None, k_out: Optional[torch.Tensor] = None,
    v_out: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GQA packed (B, S, (QH + 2*KVH)*128): per-head RMSNorm (shared (128,)
    weights) + rotate-half RoPE with full-width (B, S, 128) tables on Q and K;
    V bit copy. Returns (q (B,S,QH,128), k, v (B,S,KVH,128))."""
    named = [("packed_qkv", packed_qkv, BF16), ("q_norm_weight", q_norm_weight, BF16),
             ("k_norm_weight", k_norm_weight, BF16), ("cos", cos, BF16), ("sin", sin, BF16)]
    _dtypes(named)
    _check_per_head(packed_qkv, q_norm_weight, k_norm_weight, cos, sin, q_heads, kv_heads,
                    q_out, k_out, v_out)
    B, S, _ = packed_qkv.shape
    q_out = packed_qkv.new_empty((B, S, q_heads, HD128)) if q_out is None else q_out
    k_out = packed_qkv.new_empty((B, S, kv_heads, HD128)) if k_out is None else k_out
    v_out = packed_qkv.new_empty((B, S, kv_heads, HD128)) if v_out is None else v_out
    outs = [("q_out", q_out), ("k_out", k_out), ("v_out", v_out)]
    for name, t in outs:
        check_tensor(t, name, BF16)
    check_same_device([(n, t) for n, t, _ in named] + outs)
    run = _run_per_head if launch_directly(packed_qkv) else _per_head_op
    run(packed_qkv, q_norm_weight, k_norm_weight, cos, sin, q_heads, kv_heads, eps,
        q_out, k_out, v_out)
    return q_out, k_out, v_out


def qk_norm_rope_strided_bf16(
    q_in: torch.Tensor, k_in: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor,
    cos: torch.Tensor, sin: torch.Tensor, q_heads: int, k_heads: int, eps: float = 1e-6,
    q_out: Optional[torch.Tensor] = None, k_out: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Q/K rows with padding columns: head h of row r is ``x[r, h*128:(h+1)*128]``
    (row stride = ``x.size(1)``); per-head RMSNorm + full-width rotate-half RoPE
    with (rows, 128) tables. Returns (q (rows,QH,128), k (rows,KH,128))."""
    named = [("q_in", q_in, BF16), ("k_in", k_in, BF16), ("q_weight", q_weight, BF16),
             ("k_weight", k_weight, BF16), ("cos", cos, BF16), ("sin", sin, BF16)]
    _dtypes(named)
    _check_strided(q_in, k_in, q_weight, k_weight, cos, sin, q_heads, k_heads, q_out, k_out)
    rows = q_in.shape[0]
    q_out = q_in.new_empty((rows, q_heads, HD128)) if q_out is None else q_out
    k_out = k_in.new_empty((rows, k_heads, HD128)) if k_out is None else k_out
    outs = [("q_out", q_out), ("k_out", k_out)]
    for name, t in outs:
        check_tensor(t, name, BF16)
    check_same_device([(n, t) for n, t, _ in named] + outs)
    run = _run_strided if launch_directly(q_in) else _strided_op
    run(q_in, k_in, q_weight, k_weight, cos, sin, q_heads, k_heads, eps, q_out, k_out)
    return q_out, k_out


def _wan_named(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im):
    named = [("packed_qkv", packed_qkv, BF16)]
    if qkv_bias is not None:
        named.append(("qkv_bias", qkv_bias, BF16))
    named += [("norm_q_weight", norm_q_weight, BF16), ("norm_k_weight", norm_k_weight, BF16),
              ("freqs_re", freqs_re, FP32), ("freqs_im", freqs_im, FP32)]
    _dtypes(named)
    return [(n, t) for n, t, _ in named]


def _default_rope_len(packed, rope_seq_len):
    if rope_seq_len is None and isinstance(packed, torch.Tensor) and packed.dim() == 3:
        return packed.shape[1]
    return rope_seq_len


def qkv_split_norm_rope_bf16(
    packed_qkv: torch.Tensor, norm_q_weight: torch.Tensor, norm_k_weight: torch.Tensor,
    freqs_re: torch.Tensor, freqs_im: torch.Tensor, heads: int, head_dim: int,
    rope_seq_len: Optional[int] = None, eps: float = 1e-6, q_out: Optional[torch.Tensor] = None,
    k_out: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Wan packed (B, S, 3*D): whole-hidden (D = heads*head_dim) RMSNorm of Q and
    K, interleaved RoPE ``freqs_re[t] + i*freqs_im[t]`` for ``t < rope_seq_len``
    (default S, at most S), bf16 (B, S, heads, head_dim). V ignored."""
    named = _wan_named(packed_qkv, None, norm_q_weight, norm_k_weight, freqs_re, freqs_im)
    rope_seq_len = _default_rope_len(packed_qkv, rope_seq_len)
    _check_wan(packed_qkv, None, norm_q_weight, norm_k_weight, freqs_re, freqs_im, heads,
               head_dim, rope_seq_len, (("q_out", q_out), ("k_out", k_out)))
    B, S, _ = packed_qkv.shape
    q_out = packed_qkv.new_empty((B, S, heads, head_dim)) if q_out is None else q_out
    k_out = packed_qkv.new_empty((B, S, heads, head_dim)) if k_out is None else k_out
    outs = [("q_out", q_out), ("k_out", k_out)]
    for name, t in outs:
        check_tensor(t, name, BF16)
    check_same_device(named + outs)
    if launch_directly(packed_qkv):
        _launch_wan(packed_qkv, None, norm_q_weight, norm_k_weight, freqs_re, freqs_im, q_out,
                    k_out, None, heads, head_dim, rope_seq_len, eps)
    else:
        _norm_rope_op(packed_qkv, norm_q_weight, norm_k_weight, freqs_re, freqs_im, heads,
                      head_dim, rope_seq_len, eps, q_out, k_out)
    return q_out, k_out


def qkv_split_bias_norm_rope_v_bf16(
    packed_qkv: torch.Tensor, qkv_bias: torch.Tensor, norm_q_weight: torch.Tensor,
    norm_k_weight: torch.Tensor, freqs_re: torch.Tensor, freqs_im: torch.Tensor, heads: int,
    head_dim: int, rope_seq_len: Optional[int] = None, eps: float = 1e-6,
    q_out: Optional[torch.Tensor] = None, k_out: Optional[torch.Tensor] = None,
    v_out: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``a = packed + qkv_bias`` in fp32 (not rounded); Q/K as
    ``qkv_split_norm_rope_bf16`` on ``a``; ``v = bf16(a_V)``."""
    named = _wan_named(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im)
    rope_seq_len = _default_rope_len(packed_qkv, rope_seq_len)
    _check_wan(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im, heads,
               head_dim, rope_seq_len, (("q_out", q_out), ("k_out", k_out), ("v_out", v_out)))
    B, S, _ = packed_qkv.shape
    q_out = packed_qkv.new_empty((B, S, heads, head_dim)) if q_out is None else q_out
    k_out = packed_qkv.new_empty((B, S, heads, head_dim)) if k_out is None else k_out
    v_out = packed_qkv.new_empty((B, S, heads, head_dim)) if v_out is None else v_out
    outs = [("q_out", q_out), ("k_out", k_out), ("v_out", v_out)]
    for name, t in outs:
        check_tensor(t, name, BF16)
    check_same_device(named + outs)
    if launch_directly(packed_qkv):
        _launch_wan(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im,
                    q_out, k_out, v_out, heads, head_dim, rope_seq_len, eps)
    else:
        _bias_norm_rope_v_op(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re,
                             freqs_im, heads, head_dim, rope_seq_len, eps, q_out, k_out, v_out)
    return q_out, k_out, v_out


def qkv_split_bias_norm_rope_v_cat_bf16(
    packed_qkv: torch.Tensor, qkv_bias: torch.Tensor, norm_q_weight: torch.Tensor,
    norm_k_weight: torch.Tensor, freqs_re: torch.Tensor, freqs_im: torch.Tensor, heads: int,
    head_dim: int, video_offset: int, q_cat_out: torch.Tensor, k_cat_out: torch.Tensor,
    v_cat_out: torch.Tensor, rope_seq_len: Optional[int] = None, eps: float = 1e-6,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``qkv_split_bias_norm_rope_v_bf16`` writing row (b, t) to
    ``cat[b, video_offset + t]`` of the (B, total_S, heads, head_dim) workspaces;
    every other row untouched. RoPE row = the local ``t``."""
    named = _wan_named(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im)
    cats = [("q_cat_out", q_cat_out), ("k_cat_out", k_cat_out), ("v_cat_out", v_cat_out)]
    for name, t in cats:
        check_tensor(t, name, BF16)
    rope_seq_len = _default_rope_len(packed_qkv, rope_seq_len)
    _check_cat(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im, heads,
               head_dim, video_offset, rope_seq_len, q_cat_out, k_cat_out, v_cat_out)
    check_same_device(named + cats)
    if launch_directly(packed_qkv):
        _launch_wan(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im,
                    q_cat_out, k_cat_out, v_cat_out, heads, head_dim, rope_seq_len, eps,
                    out_tokens=q_cat_out.shape[1], out_off=video_offset)
    else:
        _cat_op(packed_qkv, qkv_bias, norm_q_weight, norm_k_weight, freqs_re, freqs_im, heads,
                head_dim, video_offset, rope_seq_len, eps, q_cat_out, k_cat_out, v_cat_out)
    return q_cat_out, k_cat_out, v_cat_out


def qkv_split_joint3_cat_bf16(
    packed_v: torch.Tensor, qkv_v_bias: torch.Tensor, norm_v_q_weight: torch.Tensor,
    norm_v_k_weight: torch.Tensor, freqs_re: torch.Tensor, freqs_im: torch.Tensor,
    packed_a: torch.Tensor, norm_a_q_weight: torch.Tensor, norm_a_k_weight: torch.Tensor,
    packed_u: torch.Tensor, norm_u_q_weight: torch.Tensor, norm_u_k_weight: torch.Tensor,
    heads: int, head_dim: int, q_cat_out: torch.Tensor, k_cat_out: torch.Tensor,
    v_cat_out: torch.Tensor, rope_seq_len: Optional[int] = None, eps_v: float = 1e-6,
    eps_a: float = 1e-6, eps_u: float = 1e-6,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Video / action / und segments into one (B, L_v+L_a+L_u, heads, head_dim)
    workspace: video rows [0, L_v) as ``qkv_split_bias_norm_rope_v`` (eps_v,
    RoPE for t < rope_seq_len, default L_v); action and und rows: whole-hidden
    Q/K RMSNorm (eps_a / eps_u), no bias, no RoPE, V copied raw."""
    named = [("packed_v", packed_v, BF16), ("qkv_v_bias", qkv_v_bias, BF16),
             ("norm_v_q_weight", norm_v_q_weight, BF16), ("norm_v_k_weight", norm_v_k_weight, BF16),
             ("freqs_re", freqs_re, FP32), ("freqs_im", freqs_im, FP32),
             ("packed_a", packed_a, BF16), ("norm_a_q_weight", norm_a_q_weight, BF16),
             ("norm_a_k_weight", norm_a_k_weight, BF16), ("packed_u", packed_u, BF16),
             ("norm_u_q_weight", norm_u_q_weight, BF16), ("norm_u_k_weight", norm_u_k_weight, BF16),
             ("q_cat_out", q_cat_out, BF16), ("k_cat_out", k_cat_out, BF16),
             ("v_cat_out", v_cat_out, BF16)]
    _dtypes(named)
    rope_seq_len = _default_rope_len(packed_v, rope_seq_len)
    _check_joint3([("v", packed_v, norm_v_q_weight, norm_v_k_weight),
                   ("a", packed_a, norm_a_q_weight, norm_a_k_weight),
                   ("u", packed_u, norm_u_q_weight, norm_u_k_weight)], qkv_v_bias, freqs_re,
                  freqs_im, heads, head_dim, rope_seq_len,
                  (("q_cat_out", q_cat_out), ("k_cat_out", k_cat_out), ("v_cat_out", v_cat_out)))
    check_same_device([(n, t) for n, t, _ in named])
    run = _run_joint3 if launch_directly(packed_v) else _joint3_op
    run(packed_v, qkv_v_bias, norm_v_q_weight, norm_v_k_weight, freqs_re, freqs_im, packed_a,
        norm_a_q_weight, norm_a_k_weight, packed_u, norm_u_q_weight, norm_u_k_weight, heads,
        head_dim, rope_seq_len, eps_v, eps_a, eps_u, q_cat_out, k_cat_out, v_cat_out)
    return q_cat_out, k_cat_out, v_cat_out
