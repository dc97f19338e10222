"""Small-M NVFP4 GEMMs on Hopper (spec: gemm-quant.md §0.3, §4, §7.3).

Three public functions:

* ``nvfp4_w4a4_decode_matvec_bf16out``  NVFP4 a [M, K/2] x NVFP4 b [N, K/2] -> bf16
  (seed op; any K % 16 == 0, M = 1..64)
* ``nvfp4_weight_only_linear_bf16``     bf16 x [..., K] x NVFP4 w [N, K/2] -> bf16 [..., N]
* ``nvfp4_quantize_weight_bf16``        bf16 w [N, K] -> (packed [N, K/2], swizzled scales)

Both products run one Triton kernel. Hopper has no FP4 tensor cores, so the
packed bytes are streamed (one [BLOCK_N, BLOCK_KH] uint8 tile per step) and
decoded in registers: the low nibble of byte j is element 2j, the high nibble
2j+1. Each nibble becomes an FP8 E4M3 code whose value is the E2M1 value
times 2^-6 (``(c & 8) << 4 | (c & 7) << 2``, one hardware cvt), times the
block's UE4M3 scale x 64: the product has <= 6 significant bits, so the BF16
operand is exact (§7.3). BF16 activations are read as int32 words holding the
matching pair (x[2j], x[2j+1]), so no interleave is needed: the step is two
``tl.dot``s (low nibbles x even elements, high x odd) with fp32 accumulation.
The weight is the dot's M side (BLOCK_N >= 64 rows), the few activation rows
its N side (padded to 16), the usual swap for small M. Split-K fills the SMs
when N / BLOCK_N is small; partial sums go to an fp32 scratch buffer and a
second kernel adds them in a fixed order (deterministic), applies alpha
(and bias) and rounds to bf16 once.
"""

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ._host import (cdiv, check_same_device, check_tensor, device_guard, launch_directly,
                    next_power_of_2, sm_count)
from ._ops import add_op_namespace_prefix
from .nvfp4_codec import bf16_words, encode_blocks, swizzled_offset

_BF16 = torch.bfloat16
_U8 = torch.uint8
_FP32 = torch.float32
MAX_DECODE_ROWS = 64  # nvfp4_w4a4_decode_matvec_bf16out: M = 1..64


# ----------------------------------------------------------------------------
# Triton device helpers
# ----------------------------------------------------------------------------


@triton.jit
def _ue4m3_x64(e):
    """64 x UE4M3 value of scale bytes (int32), smallm decode: sign honoured,
    0x7F / 0xFF -> 0. The 64 undoes the 2^-6 of the FP8-coded E2M1 values."""
    mag = e & 0x7F
    E = mag >> 3
    m = mag & 7
    # (1 + m/8) * 2^(E-7) * 2^6 ; subnormal m * 2^-9 * 2^6 = m / 8
    normal = (((E + 126) << 23) | (m << 20)).to(tl.float32, bitcast=True)
    v = tl.where(E == 0, m.to(tl.float32) * 0.125, normal)
    v = tl.where(mag == 0x7F, 0.0, v)
    return tl.where((e & 0x80) != 0, -v, v)


@triton.jit
def _e2m1_x2m6(c):
    """fp32 E2M1 value x 2^-6 of nibbles c (uint8 0..15), through an E4M3 code."""
    c8 = (((c & 8) << 4) | ((c & 7) << 2)).to(tl.uint8)
    return c8.to(tl.float8e4nv, bitcast=True).to(tl.float32)


@triton.jit
def _dequant_tile(p_bytes, p_scales, m_tile, m_rows_blocks, BR: tl.constexpr,
                  BKH: tl.constexpr):
    """[BR, BKH//8, 8] packed bytes + [BR, BKH//8] scales -> (lo, hi) bf16 [BR, BKH]."""
    b = tl.load(p_bytes, mask=m_tile, other=0)
    e = tl.load(p_scales, mask=m_rows_blocks, other=0).to(tl.int32)
    s = _ue4m3_x64(e)[:, :, None]
    lo = (_e2m1_x2m6(b & 0xF) * s).to(tl.bfloat16)
    hi = (_e2m1_x2m6(b >> 4) * s).to(tl.bfloat16)
    return tl.reshape(lo, (BR, BKH)), tl.reshape(hi, (BR, BKH))


@triton.jit(do_not_specialize=["M", "k_per_split"])
def _nvfp4_gemm_kernel(
    a_ptr, sfa_ptr, b_ptr, sfb_ptr, bias_ptr, out_ptr, ws_ptr,
    M, N, KH, n_col_super, k_per_split, alpha,
    A_FP4: tl.constexpr, HAS_BIAS: tl.constexpr, SPLIT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_KH: tl.constexpr,
):
    """acc[n, m] = sum_k W[n, k] * A[m, k] over this program's K range.

    a: NVFP4 bytes [M, KH] (A_FP4) or bf16 pairs as int32 words [M, KH]; b:
    NVFP4 bytes [N, KH]; KH = K / 2. SPLIT: write fp32 partials to ws
    [splits, M, N]; else alpha * acc (+ bias) -> bf16 out [M, N].
    """
    i_n = tl.program_id(0)
    i_m = tl.program_id(1)
    i_k = tl.program_id(2)
    NB: tl.constexpr = BLOCK_KH // 8
    o_n = i_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    o_m = i_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    m_n = o_n < N
    m_m = o_m < M
    o_b = tl.arange(0, NB)
    o_j = tl.arange(0, 8)
    k_lo = i_k * k_per_split
    k_hi = tl.minimum(KH, k_lo + k_per_split)

    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for k0 in range(k_lo, k_hi, BLOCK_KH):
        o_kb = k0 // 8 + o_b  # scale block of each group of 8 bytes
        m_kb = o_kb < k_hi // 8  # KH % 8 == 0: whole blocks only
        o_kh = o_kb[:, None] * 8 + o_j[None, :]  # [NB, 8]
        m_wb = m_n[:, None] & m_kb[None, :]
        w_lo, w_hi = _dequant_tile(
            b_ptr + o_n[:, None, None] * KH + o_kh[None, :, :],
            sfb_ptr + swizzled_offset(o_n[:, None], o_kb[None, :], n_col_super),
            m_wb[:, :, None], m_wb, BLOCK_N, BLOCK_KH)
        m_ab = m_m[:, None] & m_kb[None, :]
        if A_FP4:
            a_lo, a_hi = _dequant_tile(
                a_ptr + o_m[:, None, None] * KH + o_kh[None, :, :],
                sfa_ptr + swizzled_offset(o_m[:, None], o_kb[None, :], n_col_super),
                m_ab[:, :, None], m_ab, BLOCK_M, BLOCK_KH)
        else:
            wd = tl.load(a_ptr + o_m[:, None, None] * KH + o_kh[None, :, :],
                         mask=m_ab[:, :, None], other=0)
            a_lo = tl.reshape((wd << 16).to(tl.float32, bitcast=True).to(tl.bfloat16),
                              (BLOCK_M, BLOCK_KH))
            a_hi = tl.reshape((wd & -65536).to(tl.float32, bitcast=True).to(tl.bfloat16),
                              (BLOCK_M, BLOCK_KH))
        acc = tl.dot(w_lo, tl.trans(a_lo), acc)
        acc = tl.dot(w_hi, tl.trans(a_hi), acc)

    m_out = m_n[:, None] & m_m[None, :]
    o_out = o_m[None, :] * N + o_n[:, None]
    if SPLIT:
        tl.store(ws_ptr + i_k.to(tl.int64) * M * N + o_out, acc, mask=m_out)
    else:
        y = acc * alpha
        if HAS_BIAS:
            y += tl.load(bias_ptr + o_n, mask=m_n, other=0.0).to(tl.float32)[:, None]
        tl.store(out_ptr + o_out, y.to(tl.bfloat16), mask=m_out)


@triton.jit(do_not_specialize=["MN"])
def _splitk_reduce_kernel(ws_ptr, bias_ptr, out_ptr, MN, N, alpha,
                          SPLITS: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
    """out = bf16(alpha * sum_s ws[s] (+ bias)), splits added in order."""
    o = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = o < MN
    acc = tl.load(ws_ptr + o, mask=m, other=0.0)
    for s in tl.static_range(1, SPLITS):
        acc += tl.load(ws_ptr + s * MN + o, mask=m, other=0.0)
    y = acc * alpha
    if HAS_BIAS:
        y += tl.load(bias_ptr + o % N, mask=m, other=0.0).to(tl.float32)
    tl.store(out_ptr + o, y.to(tl.bfloat16), mask=m)


# ----------------------------------------------------------------------------
# NVFP4 encode (weight quantizer): nvfp4_codec.py, the rules of flashrt-fused-quant
# ----------------------------------------------------------------------------


@triton.jit(do_not_specialize=["n_rows"])
def _quantize_weight_kernel(w_ptr, packed_ptr, scales_ptr, n_rows, n_blocks, n_col_super,
                            global_scale, BLOCK_R: tl.constexpr, G: tl.constexpr):
    """w: bf16 pairs as int32 words [rows, 8 * n_blocks]; v = f32(w) * global_scale."""
    i_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    i_b = tl.program_id(1) * G + tl.arange(0, G)
    m2 = (i_r < n_rows)[:, None] & (i_b < n_blocks)[None, :]
    m3 = m2[:, :, None]
    o = i_r[:, None, None] * (n_blocks * 8) + i_b[None, :, None] * 8 + tl.arange(0, 8)[None, None, :]
    wd = tl.load(w_ptr + o, mask=m3, other=0)
    v_lo = (wd << 16).to(tl.float32, bitcast=True) * global_scale
    v_hi = (wd & -65536).to(tl.float32, bitcast=True) * global_scale
    byte, e = encode_blocks(v_lo, v_hi)
    tl.store(packed_ptr + o, byte.to(tl.uint8), mask=m3)
    tl.store(scales_ptr + swizzled_offset(i_r[:, None], i_b[None, :], n_col_super), e.to(tl.uint8), mask=m2)


# ----------------------------------------------------------------------------
# Launch configuration
# ----------------------------------------------------------------------------




def _gemm_config(M, N, KH, device):
    """(BLOCK_M, BLOCK_N, BLOCK_KH, splits, k_per_split, num_warps, num_stages).

    M is the dot's N side: 16 covers decode (1..16 rows), then 32 / 64. Each
    step streams BLOCK_N x BLOCK_KH weight bytes (8 KiB at 64 x 128). Splits:
    enough programs for about two per SM, each with >= 2 K steps.
    """
    block_m = 16 if M <= 16 else (32 if M <= 32 else 64)
    block_n = 64 if M <= 64 else 128
    block_kh = 128 if KH >= 128 else max(16, next_power_of_2(KH))
    tiles = cdiv(N, block_n) * cdiv(M, block_m)
    steps = cdiv(KH, block_kh)
    splits = max(1, min(16, steps // 2, cdiv(2 * sm_count(device), tiles)))
    k_per_split = cdiv(steps, splits) * block_kh
    splits = cdiv(KH, k_per_split)
    return block_m, block_n, block_kh, splits, k_per_split, 4, 4




def _launch_gemm(a, sfa, b, sfb, bias, out, M, alpha, a_fp4):
    N, KH = b.shape
    bm, bn, bkh, splits, k_per_split, warps, stages = _gemm_config(M, N, KH, b.device)
    a_arg = a if a_fp4 else bf16_words(a, "x")
    ws = torch.empty((splits, M, N), dtype=_FP32, device=b.device) if splits > 1 else out
    n_col_super = cdiv(KH // 8, 4)
    grid = (cdiv(N, bn), cdiv(M, bm), splits)
    with device_guard(b):
        _nvfp4_gemm_kernel[grid](
            a_arg, sfa if a_fp4 else b, b, sfb, bias if bias is not None else out, out, ws,
            M, N, KH, n_col_super, k_per_split, float(alpha),
            A_FP4=a_fp4, HAS_BIAS=bias is not None, SPLIT=splits > 1,
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_KH=bkh, num_warps=warps, num_stages=stages,
        )
        if splits > 1:
            block = 1024
            _splitk_reduce_kernel[(cdiv(M * N, block),)](
                ws, bias if bias is not None else out, out, M * N, N, float(alpha),
                SPLITS=splits, HAS_BIAS=bias is not None, BLOCK=block, num_warps=4)


def _launch_quantize(weight, packed, scales, global_scale):
    N, K = weight.shape
    n_blocks = K // 16
    g = min(32, next_power_of_2(n_blocks))
    block_r = max(1, min(next_power_of_2(N), 128 // g))
    grid = (cdiv(N, block_r), cdiv(n_blocks, g))
    with device_guard(weight):
        _quantize_weight_kernel[grid](bf16_words(weight, "weight"), packed, scales, N, n_blocks,
                                      cdiv(n_blocks, 4), float(global_scale),
                                      BLOCK_R=block_r, G=g, num_warps=4)


# ----------------------------------------------------------------------------
# Checks (RuntimeError unless stated), shared by wrappers, ops and fakes
# ----------------------------------------------------------------------------


def _sf_bytes(rows, K):
    return -(-rows // 128) * -(-(K // 16) // 4) * 512


def _check_k(KH, name):
    K = 2 * KH
    if KH <= 0 or K % 16 != 0:
        raise RuntimeError(f"K must be positive and a multiple of 16 (the NVFP4 block); "
                           f"{name}.shape[1] = K / 2 = {KH} gives K = {K}")
    return K


def _check_matvec(a_packed, b_packed, sfa, sfb, out):
    if b_packed.dim() != 2:
        raise RuntimeError(f"b_packed must be 2-D [N, K/2], got {b_packed.dim()} dimensions")
    N, KH = b_packed.shape
    if N <= 0:
        raise RuntimeError("N must be positive (dimensions must be non-zero)")
    K = _check_k(KH, "b_packed")
    if a_packed.dim() not in (1, 2):
        raise RuntimeError(f"a_packed must be (K/2,) or (M, K/2), got {a_packed.dim()} dimensions")
    if a_packed.shape[-1] != KH:
        raise RuntimeError(f"a_packed must contain K / 2 = {KH} bytes per row, "
                           f"got {a_packed.shape[-1]}")
    M = a_packed.shape[0] if a_packed.dim() == 2 else 1
    if M < 1 or M > MAX_DECODE_ROWS:
        raise RuntimeError(f"a_packed must have 1 to {MAX_DECODE_ROWS} rows (M), got {M}")
    if sfa.numel() < _sf_bytes(M, K):
        raise RuntimeError(f"sfa must contain at least nvfp4 swizzled bytes(M, K) = "
                           f"{_sf_bytes(M, K)} bytes, got {sfa.numel()}")
    if sfb.numel() < _sf_bytes(N, K):
        raise RuntimeError(f"sfb must contain at least nvfp4 swizzled bytes(N, K) = "
                           f"{_sf_bytes(N, K)} bytes, got {sfb.numel()}")
    if out is not None:
        _check_matvec_out(out, M, N)
    return M, N, K


def _check_matvec_out(out, M, N):
    shapes = [(M, N)] + ([(N,)] if M == 1 else [])
    if tuple(out.shape) not in shapes:
        raise RuntimeError(f"out must have shape {' or '.join(map(str, shapes[::-1]))}, "
                           f"got {tuple(out.shape)}")


def _check_linear(x, w_packed, w_scales, bias, out):
    if w_packed.dim() != 2:
        raise RuntimeError(f"w_packed must be 2-D [N, K/2], got {w_packed.dim()} dimensions")
    N, KH = w_packed.shape
    if N <= 0:
        raise RuntimeError("N must be positive (dimensions must be non-zero)")
    K = _check_k(KH, "w_packed")
    if x.dim() < 1 or x.shape[-1] != K:
        raise RuntimeError(f"x last dimension must be K = {K}, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise RuntimeError("x must be non-empty (dimensions must be non-zero)")
    if w_scales.numel() < _sf_bytes(N, K):
        raise RuntimeError(f"w_scales must contain at least nvfp4 swizzled bytes(N, K) = "
                           f"{_sf_bytes(N, K)} bytes, got {w_scales.numel()}")
    if bias is not None and tuple(bias.shape) != (N,):
        raise RuntimeError(f"bias must have shape ({N},), got {tuple(bias.shape)}")
    if out is not None:
        _check_linear_out(x, out, N)
    return x.numel() // K, N, K


def _check_linear_out(x, out, N):
    if tuple(out.shape) != (*x.shape[:-1], N):
        raise RuntimeError(f"out must have shape {(*x.shape[:-1], N)}, got {tuple(out.shape)}")


def _check_quantize(weight, packed, scales, exact_shape):
    if weight.dim() != 2:
        raise RuntimeError(f"weight must be 2-D [N, K], got {weight.dim()} dimensions")
    N, K = weight.shape
    if N <= 0:
        raise RuntimeError("N must be positive (dimensions must be non-zero)")
    if K <= 0 or K % 16 != 0:
        raise RuntimeError(f"K must be positive and divisible by 16, got {K}")
    if packed is not None:
        _check_quantize_outs(packed, scales, N, K, exact_shape)
    return N, K


def _check_quantize_outs(packed, scales, N, K, exact_shape):
    if exact_shape or packed.dim() == 2:
        if tuple(packed.shape) != (N, K // 2):
            raise RuntimeError(f"packed must have shape ({N}, {K // 2}), got {tuple(packed.shape)}")
    elif packed.numel() < N * K // 2:
        raise RuntimeError(f"packed must contain at least N * K / 2 = {N * K // 2} bytes")
    if scales.numel() < _sf_bytes(N, K):
        raise RuntimeError(f"scales must contain at least nvfp4 swizzled bytes(N, K) = "
                           f"{_sf_bytes(N, K)} bytes, got {scales.numel()}")


# ----------------------------------------------------------------------------
# Ops (out-variant, void) + fakes
# ----------------------------------------------------------------------------


def _matvec_launch(a_packed, b_packed, sfa, sfb, out, alpha):
    M = a_packed.shape[0] if a_packed.dim() == 2 else 1
    _launch_gemm(a_packed, sfa, b_packed, sfb, None, out, M, alpha, True)


@torch.library.custom_op(add_op_namespace_prefix("nvfp4_w4a4_decode_matvec_bf16out"),
                         mutates_args=("out",))
def _matvec_op(a_packed: torch.Tensor, b_packed: torch.Tensor, sfa: torch.Tensor,
               sfb: torch.Tensor, out: torch.Tensor, alpha: float = 1.0) -> None:
    _check_matvec(a_packed, b_packed, sfa, sfb, out)
    _matvec_launch(a_packed, b_packed, sfa, sfb, out, alpha)


@torch.library.register_fake(add_op_namespace_prefix("nvfp4_w4a4_decode_matvec_bf16out"))
def _matvec_fake(a_packed, b_packed, sfa, sfb, out, alpha=1.0):
    _check_matvec(a_packed, b_packed, sfa, sfb, out)


def _linear_launch(x, w_packed, w_scales, bias, out, alpha):
    K = x.shape[-1]
    _launch_gemm(x, None, w_packed, w_scales, bias, out, x.numel() // K, alpha, False)


@torch.library.custom_op(add_op_namespace_prefix("nvfp4_weight_only_linear_bf16"),
                         mutates_args=("out",))
def _linear_op(x: torch.Tensor, w_packed: torch.Tensor, w_scales: torch.Tensor,
               bias: Optional[torch.Tensor], out: torch.Tensor, alpha: float = 1.0) -> None:
    _check_linear(x, w_packed, w_scales, bias, out)
    _linear_launch(x, w_packed, w_scales, bias, out, alpha)


@torch.library.register_fake(add_op_namespace_prefix("nvfp4_weight_only_linear_bf16"))
def _linear_fake(x, w_packed, w_scales, bias, out, alpha=1.0):
    _check_linear(x, w_packed, w_scales, bias, out)


@torch.library.custom_op(add_op_namespace_prefix("nvfp4_quantize_weight_bf16"),
                         mutates_args=("packed", "scales"))
def _quantize_op(weight: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor,
                 global_scale: float = 1.0) -> None:
    _check_quantize(weight, packed, scales, False)
    _launch_quantize(weight, packed, scales, global_scale)


@torch.library.register_fake(add_op_namespace_prefix("nvfp4_quantize_weight_bf16"))
def _quantize_fake(weight, packed, scales, global_scale=1.0):
    _check_quantize(weight, packed, scales, True)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def nvfp4_w4a4_decode_matvec_bf16out(
    a_packed: torch.Tensor, b_packed: torch.Tensor, sfa: torch.Tensor, sfb: torch.Tensor, *,
    alpha: float = 1.0, out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``out[m, n] = bf16(alpha * sum_kb sa[m,kb] * sb[n,kb] * sum_{k in kb} a[m,k] * b[n,k])``.

    a_packed: uint8 ``(K/2,)`` or ``(M, K/2)``, M = 1..64; b_packed: uint8 ``(N, K/2)``;
    sfa / sfb: flat swizzled UE4M3 scales (>= bytes(M, K) / bytes(N, K)); any
    ``K % 16 == 0``. Returns ``out``: bf16 ``(N,)`` when M == 1 (the seed's
    shape; ``(1, N)`` also accepted), ``(M, N)`` otherwise.
    """
    if not isinstance(b_packed, torch.Tensor) or b_packed.dim() != 2:
        got = b_packed.dim() if isinstance(b_packed, torch.Tensor) else type(b_packed).__name__
        raise ValueError(f"b_packed must be a 2-D tensor [N, K/2], got {got}")
    named = [("a_packed", a_packed), ("b_packed", b_packed), ("sfa", sfa), ("sfb", sfb)]
    for name, t in named:
        check_tensor(t, name, _U8)
    check_same_device(named)
    M, N, K = _check_matvec(a_packed, b_packed, sfa, sfb, None)
    if out is None:
        out = b_packed.new_empty((N,) if M == 1 else (M, N), dtype=_BF16)
    check_tensor(out, "out", _BF16)
    check_same_device([named[0], ("out", out)])  # the inputs already agree
    _check_matvec_out(out, M, N)
    if launch_directly(b_packed):
        _matvec_launch(a_packed, b_packed, sfa, sfb, out, alpha)
    else:
        _matvec_op(a_packed, b_packed, sfa, sfb, out, alpha)
    return out


def nvfp4_weight_only_linear_bf16(
    x: torch.Tensor, w_packed: torch.Tensor, w_scales: torch.Tensor, *, alpha: float = 1.0,
    bias: Optional[torch.Tensor] = None, out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``out = bf16(alpha * (x @ W^T) (+ bias))`` with W the NVFP4 weight
    (``w_packed`` uint8 ``[N, K/2]``, ``w_scales`` flat swizzled UE4M3, >= bytes(N, K)),
    dequantized in registers (exact in bf16), fp32 accumulation. x: bf16
    ``(..., K)``, any number of rows; bias: bf16 ``(N,)``; out: bf16 ``(..., N)``.
    ``alpha`` is ``1 / global_scale`` of ``nvfp4_quantize_weight_bf16``.
    """
    named = [("x", x), ("w_packed", w_packed), ("w_scales", w_scales)]
    check_tensor(x, "x", _BF16)
    check_tensor(w_packed, "w_packed", _U8)
    check_tensor(w_scales, "w_scales", _U8)
    if bias is not None:
        check_tensor(bias, "bias", _BF16)
        named.append(("bias", bias))
    check_same_device(named)
    M, N, K = _check_linear(x, w_packed, w_scales, bias, None)
    if out is None:
        out = x.new_empty((*x.shape[:-1], N))
    check_tensor(out, "out", _BF16)
    check_same_device([named[0], ("out", out)])  # the inputs already agree
    _check_linear_out(x, out, N)
    if launch_directly(x):
        _linear_launch(x, w_packed, w_scales, bias, out, alpha)
    else:
        _linear_op(x, w_packed, w_scales, bias, out, alpha)
    return out


def nvfp4_quantize_weight_bf16(
    weight: torch.Tensor, *, global_scale: float = 1.0, packed: Optional[torch.Tensor] = None,
    scales: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Quantize an nn.Linear weight bf16 ``[N, K]`` (``K % 16 == 0``) to NVFP4:
    ``v = f32(weight) * global_scale``, per 16 along K: scale byte
    ``ceil_ue4m3(amax / 6)``, E2M1 codes of ``v / scale`` (ties away from zero),
    the encode rules of flashrt-fused-quant. Returns ``(packed, scales)``:
    uint8 ``[N, K/2]`` and the flat swizzled scales (``bytes(N, K)``, allocated
    zero-filled; padding never written). Use ``alpha = 1 / global_scale`` in
    ``nvfp4_weight_only_linear_bf16``. Recommended ``global_scale = 1440 / amax(|weight|)``
    (6 x 240): block scales then stay in UE4M3's normal range and below the
    encoder's ``t > 240 -> 448`` jump (NVIDIA's usual 6 x 448 = 2688 would send
    the largest blocks to 448, up to 1.86x coarser).
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        got = weight.dim() if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a 2-D tensor [N, K], got {got}")
    check_tensor(weight, "weight", _BF16)
    N, K = _check_quantize(weight, None, None, False)
    if packed is None:
        packed = torch.empty((N, K // 2), dtype=_U8, device=weight.device)
    if scales is None:
        scales = torch.zeros(_sf_bytes(N, K), dtype=_U8, device=weight.device)
    check_tensor(packed, "packed", _U8)
    check_tensor(scales, "scales", _U8)
    check_same_device([("weight", weight), ("packed", packed), ("scales", scales)])
    _check_quantize_outs(packed, scales, N, K, False)
    if launch_directly(weight):
        _launch_quantize(weight, packed, scales, global_scale)
    else:
        _quantize_op(weight, packed, scales, global_scale)
    return packed, scales
