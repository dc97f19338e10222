"""Small-M NVFP4 GEMMs on Hopper (spec: gemm-quant.md §0.3, §4, §7.3).

Three public functions:

* ``nvfp4_w4a4_decode_matvec_bf16out``  NVFP4 a [M, K/2] x NVFP4 b [N, K/2] -> bf16
  (seed op; any K % 16 == 0, M = 1..64)
* ``nvfp4_weight_only_linear_bf16``     bf16 x [..., K] x NVFP4 w [N, K/2] -> bf16 [..., N]
* ``nvfp4_quantize_weight_bf16``        bf16 w [N, K] -> (packed [N, K/2], swizzled scales)

Hopper has no FP4 tensor cores: the packed weights are streamed and decoded in
registers, exactly, by integer bit moves (no lookup table, no conversion
instruction): a nibble moved to bits 31..28 and shifted right arithmetically by 6
is the fp32 pattern of its E2M1 value x 2^-126 (code 1 is the subnormal 2^-127);
times the block's UE4M3 scale x 2^117 (decoded the same way, once per block) it
is the dequantized weight x 2^-9, exact and normal (§7.3: <= 6 significant bits,
so also exact in BF16). The 2^-9 is undone in the output scale.

* ``_gemv_kernel`` (decode rows, see ``gemm_config``): CUDA-core fp32 FMAs on int64
  words of one 16-element block each (16-byte loads), BF16 activations read as
  int32 pairs, NVFP4 activations decoded like the weights.
* ``_dot_kernel`` (more rows): [BLOCK_N, BLOCK_KH] byte tiles dequantized to BF16
  (low / high nibbles against even / odd activation elements: two ``tl.dot`` per
  step, K in an order that gives each MMA operand thread whole NVFP4 blocks), the
  weight on the MMA's M side and the activation rows on its N side.

* ``nvfp4_mma`` (2 to MMA_MAX_ROWS rows of either product on sm_90 with the verified
  Triton; nvfp4_mma.py): a Gluon kernel building both mma.sync operands in registers,
  with the same decode and split-K; where it runs, the rule takes it instead of the
  tl.dot kernel (1.1-2.3x faster there on H200).

All split K over several programs per output tile when the tiles alone do not
fill the GPU: each split stores its fp32 partial in a workspace and the last one
to arrive (an atomic counter per tile, reset by that program) adds them in split
order, applies alpha (and bias) and rounds to bf16 once. One launch,
deterministic whichever split finishes last.
"""

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from ._helpers import prefetch_l2, split_k_arrive, split_k_release
from ._host import (SplitCounters, cdiv, check_same_device, check_tensor, device_guard,
                    interpreting, launch_directly, next_power_of_2, sm_count, uses_pdl)
from ._ops import add_op_namespace_prefix
from .nvfp4_codec import bf16_words, encode_blocks, swizzled_offset

_BF16 = torch.bfloat16
_U8 = torch.uint8
_FP32 = torch.float32
MAX_DECODE_ROWS = 64  # nvfp4_w4a4_decode_matvec_bf16out: M = 1..64


# ----------------------------------------------------------------------------
# Triton device helpers: exact NVFP4 decode by integer bit moves (no converts)
# ----------------------------------------------------------------------------

_RAW_MASK = tl.constexpr(-2118123520)  # 0x81C00000 (int32): fp32 sign bit + bits 24..22
_X2P127 = tl.constexpr(1.7014118346046923e38)  # 2^127
_X2P110 = tl.constexpr(1.2980742146337069e33)  # 2^110


@triton.jit
def _e2m1_raw(h, t: tl.constexpr):
    """fp32 ``e2m1 x 2^-126`` of nibble ``t`` (0..7) of int32 words ``h``, exact.

    The nibble moves to bits 31..28 (its sign bit lands on the fp32 sign), then
    an arithmetic shift by 6 puts its two exponent bits on the fp32 exponent's
    low bits and its mantissa bit on the fp32 mantissa's top bit; the mask drops
    the sign copies and the other nibbles. Code 1 (0.5) becomes the subnormal
    2^-127, which fp32 multiplies on the GPU keep (no flush to zero).
    """
    return (((h << (28 - 4 * t)) >> 6) & _RAW_MASK).to(tl.float32, bitcast=True)


@triton.jit
def _ue4m3_x2p117(e):
    """UE4M3 value x 2^117 of scale bytes ``e`` (int32), smallm decode: sign honoured,
    0x7F / 0xFF -> 0. Times an ``_e2m1_raw`` value it gives the dequantized element
    x 2^-9, exact and normal (2^117 keeps 448 x 2^117 below the fp32 maximum)."""
    mag = e & 0x7F
    # bits of the UE4M3 value x 2^-120 (an fp32 subnormal when E = 0), then 2^127 x 2^110
    v = ((mag << 20) | ((e & 0x80) << 24)).to(tl.float32, bitcast=True) * _X2P127 * _X2P110
    return tl.where(mag == 0x7F, 0.0, v)


@triton.jit
def _swz_row(r, n_col_super):
    """Row part of the 128x4 swizzled scale offset (spec §0.3), by shifts and masks."""
    return (r >> 7) * (n_col_super * 512) + (r & 31) * 16 + ((r >> 5) & 3) * 4


@triton.jit
def _swz_col(c):
    """Column (16-element block) part of the swizzled scale offset."""
    return (c >> 2) * 512 + (c & 3)


@triton.jit
def _store_rows(y, o_m, o_n, M, N, alpha, bias_ptr, out_ptr, HAS_BIAS: tl.constexpr):
    """out[m, n] = bf16(alpha * y[m, n] (+ bias[n])) for the [BM, BN] tile ``y``."""
    m_n = o_n < N
    y = y * alpha
    if HAS_BIAS:
        y += tl.load(bias_ptr + o_n, mask=m_n, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + o_m.to(tl.int64)[:, None] * N + o_n[None, :], y.to(tl.bfloat16),
             mask=(o_m < M)[:, None] & m_n[None, :])


@triton.jit
def _finish(y, tile, i_s, n_split, o_m, o_n, M, N, alpha, bias_ptr, out_ptr, ws_ptr, lock_ptr,
            HAS_BIAS: tl.constexpr, SPLIT: tl.constexpr,
            BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Store the [BM, BN] tile ``y`` (fp32, unscaled), or with split-K its partial:
    each split writes ws[tile, split]; the last of the tile's splits to arrive
    (an atomic counter per tile, reset by that program) adds them in split order
    (deterministic whoever arrives last) and stores the tile. One launch."""
    if SPLIT:
        TILE: tl.constexpr = BLOCK_M * BLOCK_N
        o_t = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
        p_ws = ws_ptr + tile.to(tl.int64) * n_split * TILE + o_t
        if split_k_arrive(p_ws, y, i_s, lock_ptr + tile, n_split, TILE):
            y = tl.load(p_ws, cache_modifier=".cg")
            for j in range(1, n_split):  # fixed order
                y += tl.load(p_ws + j * TILE, cache_modifier=".cg")
            _store_rows(y, o_m, o_n, M, N, alpha, bias_ptr, out_ptr, HAS_BIAS)
            split_k_release(lock_ptr + tile)
    else:
        _store_rows(y, o_m, o_n, M, N, alpha, bias_ptr, out_ptr, HAS_BIAS)


@triton.jit
def _await_inputs(w_ptr, sfw_ptr, rows, kb_lo, kb_hi, KH, n_col_super, PDL: tl.constexpr,
                  PREFETCH: tl.constexpr, EARLY_RELEASE: tl.constexpr):
    """Prologue. PREFETCH: bulk-prefetch this program's weight slice (blocks kb_lo ..
    kb_hi of ``rows``, 8 bytes each) and its rows' scale chunks into L2, a cache hint
    (the scales of a tile's rows, within one 128-row block, for column groups kb_lo / 4
    .. are contiguous 512-byte chunks of the swizzled layout). PDL (programmatic
    dependent launch, sm_90+): this kernel may start while the previous one runs; wait
    for it here (every read comes after the wait, so it is correct whatever that kernel
    wrote, the weight included), then, with EARLY_RELEASE, let the next kernel launch
    (else ``_release_dependents`` after the K loop)."""
    if PREFETCH:
        w_bytes = w_ptr.to(tl.pointer_type(tl.uint8))
        prefetch_l2(w_bytes + rows.to(tl.int64) * KH + kb_lo * 8, (kb_hi - kb_lo) * 8)
        first = (tl.min(rows, 0) >> 7) * (n_col_super * 512) + (kb_lo >> 2) * 512
        prefetch_l2(sfw_ptr + first + tl.zeros((1,), tl.int64), ((kb_hi - kb_lo + 3) >> 2) * 512)
    if PDL:
        gdc_wait()
        if EARLY_RELEASE:
            gdc_launch_dependents()


@triton.jit
def _release_dependents(PDL: tl.constexpr, EARLY_RELEASE: tl.constexpr):
    """PDL without EARLY_RELEASE (a sweep option): the next kernel may launch once every
    program has finished its K loop."""
    if PDL and not EARLY_RELEASE:
        gdc_launch_dependents()


# ----------------------------------------------------------------------------
# GEMV kernel (few rows): CUDA-core FMAs on 16-element block words
# ----------------------------------------------------------------------------


@triton.jit(do_not_specialize=["M", "steps_per_split", "n_split"])
def _gemv_kernel(
    a_ptr, sfa_ptr, w_ptr, sfw_ptr, bias_ptr, out_ptr, ws_ptr, lock_ptr,
    M, N, KB, n_col_super, steps_per_split, n_split, out_scale, alpha,
    A_FP4: tl.constexpr, HAS_BIAS: tl.constexpr, SPLIT: tl.constexpr, EVEN_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr,
    PDL: tl.constexpr, PREFETCH: tl.constexpr, EARLY_RELEASE: tl.constexpr,
):
    """y[m, n] = sum_k A[m, k] * W[n, k] for all M (<= BLOCK_M) rows of A.

    w: int64 words [N, KB], one 16-element block each (nibble t = element 16c + t);
    a: the same for NVFP4 activations (A_FP4), else bf16 pairs as int32 words
    [M, 8 KB]. Program (tile, split) owns weight rows [tile * BLOCK_N, +BLOCK_N) and
    steps_per_split steps of BLOCK_B blocks from split * steps_per_split * BLOCK_B.
    The fp32 accumulator keeps the block axes, reduced once at the end.
    """
    i_p = tl.program_id(0)
    i_n = i_p // n_split
    i_s = i_p % n_split
    # Tiles are 4-D [A rows, block pairs, weight rows, 2]: the weight words and their
    # scale bytes then both load 2 contiguous elements per thread along the last axis,
    # get one layout (lanes along the block pairs: coalesced), and all the math stays
    # in it (A rows in-thread).
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)[None, None, :, None]
    o_m = tl.arange(0, BLOCK_M)[:, None, None, None]
    o_i = tl.arange(0, BLOCK_B // 2)[None, :, None, None]
    o_t = tl.arange(0, 2)[None, None, None, :]
    o_b = 2 * o_i + o_t
    m_n = o_n < N
    m_m = o_m < M
    kb_lo = i_s * steps_per_split * BLOCK_B  # a multiple of BLOCK_B: aligned vector loads
    kb_hi = tl.minimum(KB, kb_lo + steps_per_split * BLOCK_B)
    rows = tl.minimum(i_n * BLOCK_N + tl.arange(0, BLOCK_N), N - 1)
    _await_inputs(w_ptr, sfw_ptr, rows, kb_lo, kb_hi, 8 * KB, n_col_super, PDL, PREFETCH,
                  EARLY_RELEASE)
    p_w = w_ptr + o_n.to(tl.int64) * KB + o_b
    # swizzled column offset of block kb + 2i + t (kb % 4 == 0): groups of 4 blocks are
    # 4 contiguous bytes, so each pair is 2 contiguous bytes
    p_sw = sfw_ptr + _swz_row(o_n, n_col_super) + (o_i >> 1) * 512 + 2 * (o_i & 1) + o_t
    if A_FP4:
        p_a = a_ptr + o_m * KB + o_b
        p_sa = sfa_ptr + _swz_row(o_m, n_col_super) + (o_i >> 1) * 512 + 2 * (o_i & 1) + o_t
    else:
        p_a = a_ptr + o_m * (8 * KB) + 8 * o_b
    acc = tl.zeros((BLOCK_M, BLOCK_B // 2, BLOCK_N, 2), dtype=tl.float32)
    for kb in range(kb_lo, kb_hi, BLOCK_B):
        if EVEN_K:  # masks constant along the blocks: 16-byte weight loads
            m_w = m_n
            m_a = m_m
        else:
            m_w = m_n & (kb + o_b < kb_hi)
            m_a = m_m & (kb + o_b < kb_hi)
        wq = tl.load(p_w + kb, mask=m_w, other=0)
        e = tl.load(p_sw + (kb >> 2) * 512, mask=m_w, other=0)
        s = _ue4m3_x2p117(e.to(tl.int32))
        w_lo = wq.to(tl.int32)
        w_hi = (wq >> 32).to(tl.int32)
        if A_FP4:
            aq = tl.load(p_a + kb, mask=m_a, other=0)
            sa = _ue4m3_x2p117(tl.load(p_sa + (kb >> 2) * 512, mask=m_a, other=0).to(tl.int32))
            a_lo = aq.to(tl.int32)
            a_hi = (aq >> 32).to(tl.int32)
        for j in tl.static_range(4):  # elements 16c + 2j, +1 (low word) and 16c + 8 + 2j, +1
            if A_FP4:
                x0 = _e2m1_raw(a_lo, 2 * j) * sa
                x1 = _e2m1_raw(a_lo, 2 * j + 1) * sa
                x8 = _e2m1_raw(a_hi, 2 * j) * sa
                x9 = _e2m1_raw(a_hi, 2 * j + 1) * sa
            else:
                p_lo = tl.load(p_a + 8 * kb + j, mask=m_a, other=0)
                p_hi = tl.load(p_a + 8 * kb + 4 + j, mask=m_a, other=0)
                x0 = (p_lo << 16).to(tl.float32, bitcast=True)
                x1 = (p_lo & -65536).to(tl.float32, bitcast=True)
                x8 = (p_hi << 16).to(tl.float32, bitcast=True)
                x9 = (p_hi & -65536).to(tl.float32, bitcast=True)
            acc += (_e2m1_raw(w_lo, 2 * j) * s) * x0
            acc += (_e2m1_raw(w_lo, 2 * j + 1) * s) * x1
            acc += (_e2m1_raw(w_hi, 2 * j) * s) * x8
            acc += (_e2m1_raw(w_hi, 2 * j + 1) * s) * x9
    _release_dependents(PDL, EARLY_RELEASE)
    acc = tl.sum(tl.sum(acc, axis=3), axis=1)
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_m = tl.arange(0, BLOCK_M)
    y = acc * out_scale
    _finish(y, i_n, i_s, n_split, o_m, o_n, M, N, alpha, bias_ptr, out_ptr, ws_ptr, lock_ptr,
            HAS_BIAS, SPLIT, BLOCK_M, BLOCK_N)


# ----------------------------------------------------------------------------
# tl.dot kernel (more rows): weights dequantized to BF16 tiles in registers
# ----------------------------------------------------------------------------


# On the GPU the tl.dot kernel decodes packed bytes with the PTX below: one call takes two
# int16 elements (2 bytes each) in one register, a byte permute moves byte 0 (then byte 1)
# of each element to its own 16-bit half, then shifts and one LOP3 per bf16x2 pair (low
# nibbles, high nibbles) build the bf16 patterns of e2m1 x 2^-126 (the bf16 form of
# _e2m1_raw: sign to bit 15, exponent and mantissa bits to 8..6; code 1 is the bf16
# subnormal 2^-127), then one bf16x2 multiply by the elements' block scales x 2^117
# (exact: <= 6 significant bits; bf16 multiplies keep subnormals). Element-wise: each
# output half depends only on its own element, so it is correct whichever two elements
# Triton packs into a call. $0 / $1 = low / high nibbles of byte 0 of each element, $2 /
# $3 of byte 1. The interpreter (no inline PTX) runs the fp32 form: both give the same bits.


def _e2m1_pair_ptx(byte_select, out_lo, out_hi):
    """PTX for two bytes of $4 (byte permute selector: one byte of each int16 element) ->
    bf16x2 outputs out_lo (their low nibbles) and out_hi (high nibbles), times the scale
    pair $5."""
    return f"""
prmt.b32 t, $4, 0, {byte_select};
shl.b32 x, t, 6;
shl.b32 y, t, 12;
lop3.b32 x, x, y, 0x81C081C0, 0xA8;
mul.rn.bf16x2 {out_lo}, x, $5;
and.b32 u, t, 0x00F000F0;
shl.b32 x, u, 2;
shl.b32 y, u, 8;
lop3.b32 x, x, y, 0x81C081C0, 0xA8;
mul.rn.bf16x2 {out_hi}, x, $5;"""


_E2M1_QUAD = tl.constexpr("{\n.reg .b32 t, u, x, y;" + _e2m1_pair_ptx("0x4240", "$0", "$1")
                          + _e2m1_pair_ptx("0x4341", "$2", "$3") + "\n}\n")


# The dot kernel's K order. A K step of BKH bytes is one lo-nibble dot and one hi-nibble
# dot of BKH each (dot index k <-> byte p). The order of k is free as long as both
# operands use it; this one gives each thread of the wgmma register operand (it holds k
# pairs 2t, 2t+1 and 2t+8, 2t+9 of every 16, t = lane % 4) the 8 contiguous bytes of one
# NVFP4 block per 32: byte p = 32u + 8t + 4v + 2a + b sits at k = 32u + 16v + 8b + 2t + a.
# One 8-byte shared-memory load and one scale per block and thread, instead of 2-byte
# loads spread over every block of the step (offline sm_90 build, 64 x 64-byte tile:
# 359 loop instructions against 575). Bytes p, p + 2 (byte b of neighbouring int16
# elements, what one PTX decode output register holds) land on k, k + 1: the bf16 pair
# the MMA operand register wants.


@triton.jit
def _kperm(t, R: tl.constexpr, BKH: tl.constexpr):
    """[R, BKH] tile in byte order -> the dot kernel's K order."""
    t = tl.reshape(t, (R, BKH // 32, 4, 2, 2, 2))  # (u, t, v, a, b)
    return tl.reshape(tl.permute(t, (0, 1, 3, 5, 2, 4)), (R, BKH))


@triton.jit
def _kperm_halves(a, b, R: tl.constexpr, BKH: tl.constexpr):
    """The PTX decode's two [R, BKH/2] outputs (byte 0 / byte 1 of each int16 element e,
    i.e. bytes 2e and 2e + 1) -> the [R, BKH] tile in the K order."""
    a = tl.reshape(a, (R, BKH // 32, 4, 2, 2))  # element (u, t, v, a); the join adds b
    b = tl.reshape(b, (R, BKH // 32, 4, 2, 2))
    return tl.reshape(tl.permute(tl.join(a, b), (0, 1, 3, 5, 2, 4)), (R, BKH))


@triton.jit
def _block_scales(p_sf_row, kb, m_rows, m_blocks, n_col_super, BR: tl.constexpr,
                  NB: tl.constexpr, WORDS: tl.constexpr):
    """Scale bytes (int32 [BR, NB]) of blocks kb .. kb + NB - 1 (kb % 4 == 0; ``m_blocks``
    their mask) of the rows whose swizzled scales start at ``p_sf_row`` ([BR] pointers).

    WORDS (4-byte aligned scales, NB >= 8): one int32 word per row and group of 4 blocks
    (4 contiguous bytes of the swizzled layout), [BR, NB / 4], spread to the blocks by a
    gather. Triton pipelines these loads (cp.async) with the packed tile and keeps the
    decode in the MMA operand layout; single bytes it loads synchronously every K step
    (the kernel's main stall, per Nsight Compute). Other spellings of the word spread (a
    reshape, a split, [BR, 1] loads per group) made Triton 3.6 decode in the load's
    layout and send the whole dequantized tile through shared memory. A group past the
    row's last is not read (its blocks are masked in the packed tile); blocks past the
    split's end inside a group are read and unused."""
    o_b = tl.arange(0, NB)[None, :]
    if WORDS and NB >= 8:
        o_g = (kb >> 2) + tl.arange(0, NB // 4)[None, :]
        p = p_sf_row.to(tl.pointer_type(tl.int32))[:, None] + o_g * 128
        w = tl.load(p, mask=m_rows[:, None] & (o_g < n_col_super), other=0)
        w = tl.gather(w, tl.broadcast_to(o_b >> 2, (BR, NB)), axis=1)
        return (w >> (8 * (o_b & 3))) & 0xFF
    return tl.load(p_sf_row[:, None] + _swz_col(kb + o_b), mask=m_blocks, other=0).to(tl.int32)


@triton.jit
def _dequant_tile(p_packed, row_off, kb, p_sf_row, m_rows, m_blocks, n_col_super,
                  BR: tl.constexpr, BKH: tl.constexpr, PTX: tl.constexpr, EVEN_K: tl.constexpr,
                  SCALE_WORDS: tl.constexpr):
    """Rows ``row_off`` (byte offsets, [BR]) x blocks kb.. kb + BKH/8 of a packed NVFP4
    operand + their scales (rows' swizzled scale pointers ``p_sf_row``) -> (lo, hi) bf16
    [BR, BKH] in the K order, holding the dequantized elements x 2^-9 (exact in bf16)."""
    NB: tl.constexpr = BKH // 8
    m_b = m_rows[:, None] if EVEN_K else m_blocks
    s = _ue4m3_x2p117(_block_scales(p_sf_row, kb, m_rows, m_b, n_col_super, BR, NB,
                                    SCALE_WORDS))
    s = s[:, :, None]
    if PTX:  # int16 elements: each asm call gets 4 bytes in one register
        o = ((row_off // 2)[:, None, None] + (kb * 4 + tl.arange(0, NB) * 4)[None, :, None]
             + tl.arange(0, 4)[None, None, :])
        w = tl.load(p_packed.to(tl.pointer_type(tl.int16)) + o, mask=m_b[:, :, None], other=0)
        s16 = tl.broadcast_to(s.to(tl.bfloat16), (BR, NB, 4))
        lo_a, hi_a, lo_b, hi_b = tl.inline_asm_elementwise(
            _E2M1_QUAD, "=r,=r,=r,=r,r,r", [w, s16],
            dtype=(tl.bfloat16, tl.bfloat16, tl.bfloat16, tl.bfloat16), is_pure=True, pack=2)
        lo_a, lo_b = tl.reshape(lo_a, (BR, BKH // 2)), tl.reshape(lo_b, (BR, BKH // 2))
        hi_a, hi_b = tl.reshape(hi_a, (BR, BKH // 2)), tl.reshape(hi_b, (BR, BKH // 2))
        return _kperm_halves(lo_a, lo_b, BR, BKH), _kperm_halves(hi_a, hi_b, BR, BKH)
    # bytes and their scales put in the K order first, then decoded element-wise (decoding
    # first and permuting the bf16 tile makes Triton 3.6 fail to build the dot's shared
    # operand layout when this tile is the activation side)
    o = (row_off[:, None, None] + (kb * 8 + tl.arange(0, NB) * 8)[None, :, None]
         + tl.arange(0, 8)[None, None, :])
    b = tl.load(p_packed + o, mask=m_b[:, :, None], other=0).to(tl.int32)
    b = _kperm(tl.reshape(b, (BR, BKH)), BR, BKH)
    s = _kperm(tl.reshape(tl.broadcast_to(s, (BR, NB, 8)), (BR, BKH)), BR, BKH)
    return (_e2m1_raw(b, 0) * s).to(tl.bfloat16), (_e2m1_raw(b, 1) * s).to(tl.bfloat16)


@triton.jit(do_not_specialize=["M", "steps_per_split", "n_split"])
def _dot_kernel(
    a_ptr, sfa_ptr, w_ptr, sfw_ptr, bias_ptr, out_ptr, ws_ptr, lock_ptr,
    M, N, KH, n_col_super, steps_per_split, n_split, out_scale, alpha,
    A_FP4: tl.constexpr, HAS_BIAS: tl.constexpr, SPLIT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_KH: tl.constexpr,
    PTX_DECODE: tl.constexpr, EVEN_K: tl.constexpr, SCALE_WORDS: tl.constexpr,
    PDL: tl.constexpr, PREFETCH: tl.constexpr, EARLY_RELEASE: tl.constexpr,
):
    """acc[n, m] = sum_k W[n, k] * A[m, k], two ``tl.dot`` per K step (low nibbles x
    even elements, high x odd), K in the order of ``_kperm``. a: NVFP4 bytes [M, KH]
    (A_FP4) or bf16 pairs as int32 words [M, KH]; w: NVFP4 bytes [N, KH]; KH = K / 2,
    blocks of 8 bytes. The weight is the dot's M side, the activation rows its N side
    (swap-AB). EVEN_K: every step holds BLOCK_KH bytes (no K masks). SCALE_WORDS: scales
    read as int32 words (``_block_scales``; the scale tensors are 4-byte aligned)."""
    i_p = tl.program_id(0)
    i_mt = tl.program_id(1)
    i_n = i_p // n_split
    i_s = i_p % n_split
    NB: tl.constexpr = BLOCK_KH // 8
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_m = i_mt * BLOCK_M + tl.arange(0, BLOCK_M)
    m_n = o_n < N
    m_m = o_m < M
    o_b = tl.arange(0, NB)
    o_j = tl.arange(0, 8)
    kb_lo = i_s * steps_per_split * NB  # a multiple of NB: aligned vector loads
    kb_hi = tl.minimum(KH // 8, kb_lo + steps_per_split * NB)
    _await_inputs(w_ptr, sfw_ptr, tl.minimum(o_n, N - 1), kb_lo, kb_hi, KH, n_col_super, PDL,
                  PREFETCH, EARLY_RELEASE)
    sfw_row = sfw_ptr + _swz_row(o_n, n_col_super)
    w_row = o_n.to(tl.int64) * KH
    a_row = o_m.to(tl.int64) * KH
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for kb in range(kb_lo, kb_hi, NB):
        o_kb = kb + o_b
        m_kb = o_kb < kb_hi
        m_ab = m_m[:, None] & m_kb[None, :]
        w_lo, w_hi = _dequant_tile(w_ptr, w_row, kb, sfw_row, m_n,
                                   m_n[:, None] & m_kb[None, :], n_col_super, BLOCK_N, BLOCK_KH, PTX_DECODE,
                                   EVEN_K, SCALE_WORDS)
        if A_FP4:
            a_lo, a_hi = _dequant_tile(  # the small side: fp32 form
                a_ptr, a_row, kb, sfa_ptr + _swz_row(o_m, n_col_super), m_m, m_ab, n_col_super,
                BLOCK_M, BLOCK_KH, False, EVEN_K, False)  # words: Triton 3.6 fails on its gather
        else:
            m_a = m_m[:, None, None] if EVEN_K else m_ab[:, :, None]
            o_kh = o_kb[:, None] * 8 + o_j[None, :]  # [NB, 8]
            wd = tl.load(a_ptr + a_row[:, None, None] + o_kh[None, :, :], mask=m_a, other=0)
            wd = _kperm(tl.reshape(wd, (BLOCK_M, BLOCK_KH)), BLOCK_M, BLOCK_KH)
            a_lo = (wd << 16).to(tl.float32, bitcast=True).to(tl.bfloat16)
            a_hi = (wd & -65536).to(tl.float32, bitcast=True).to(tl.bfloat16)
        acc = tl.dot(w_lo, tl.trans(a_lo), acc)
        acc = tl.dot(w_hi, tl.trans(a_hi), acc)
    _release_dependents(PDL, EARLY_RELEASE)
    y = tl.trans(acc) * out_scale
    tile = i_mt * (tl.num_programs(0) // n_split) + i_n
    _finish(y, tile, i_s, n_split, o_m, o_n, M, N, alpha, bias_ptr, out_ptr, ws_ptr, lock_ptr,
            HAS_BIAS, SPLIT, BLOCK_M, BLOCK_N)


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
# Launch configuration: a pure function of (path, M, N, K, device), no autotune
# ----------------------------------------------------------------------------

# Rows served by the FMA GEMV kernel (more rows: the tl.dot kernel), measured on H200:
# BF16 activations, 1 row (at 4 rows the dot kernel was 1.2-2x faster, at 8 up to
# 1.25x); NVFP4 activations (the W4A4 matvec), 1 row: the K-ordered dot kernel's 16-row
# tile (W4A4 M = 16: 11.1 / 9.1 / 28.1 / 29.3 µs at K x N = 1024x8192 / 4096x1024 /
# 2048x16384 / 16384x2048) against the GEMV at 4 rows (15.4 / 9.1 / 40.9 / 35.6).
GEMV_MAX_ROWS = 1
W4A4_GEMV_MAX_ROWS = 1
# How the tl.dot kernel reads the weight's block scales (dot_config's ``scales``): int32
# words spread by a gather (``_block_scales``). H200, tune_smallm.py, against single
# bytes: linear M = 4 11.3 / 8.1 / 26.5 / 27.9 µs vs 11.3 / 8.1 / 28.0 / 29.2 (K x N =
# 1024x8192 / 4096x1024 / 2048x16384 / 16384x2048), W4A4 M = 16 11.3 / 7.7 / 26.9 / 27.6
# vs 11.4 / 8.3 / 28.3 / 29.6, M = 64 26.4 / 18.9 / 63.4 / 56.5 vs 26.5 / 19.0 / 66.9 / 59.4.
DOT_SCALES = "words"


def _even_split(steps, n_split):
    """(n_split, steps_per_split) with ``steps`` spread evenly over at most ``n_split``."""
    per_split = cdiv(steps, max(1, n_split))
    return cdiv(steps, per_split), per_split


def _split(tiles, steps, device, waves):
    """K split so that tiles x splits reaches about ``waves`` programs per SM (at least
    one step per split)."""
    return _even_split(steps, min(steps, cdiv(waves * sm_count(device), tiles)))


def _split_capped(tiles, steps, device, max_waves=4, min_steps=2):
    """The most K splits keeping tiles x splits <= max_waves programs per SM and
    >= min_steps K steps per split (at least one split)."""
    return _even_split(steps, min(steps // min_steps, (max_waves * sm_count(device)) // tiles))


def gemv_config(M, N, KB, device, block_n=32, block_b=32, warps=4, waves=4):
    """("gemv", BLOCK_M, BLOCK_N, BLOCK_B, n_split, steps_per_split, warps).

    Each step streams BLOCK_N x BLOCK_B block words (8 bytes each)."""
    block_b = min(block_b, max(2, next_power_of_2(KB)))
    n_split, per_split = _split(cdiv(N, block_n), cdiv(KB, block_b), device, waves)
    return ("gemv", next_power_of_2(M), block_n, block_b, n_split, per_split, warps)


def dot_config(M, N, KB, device, block_n=None, block_kh=None, warps=None, stages=3, waves=None,
               decode=None, scales=None, max_waves=4, min_steps=2):
    """("dot", BLOCK_M, BLOCK_N, BLOCK_KH, n_split, steps_per_split, warps, stages, decode,
    scales).

    M is the dot's N side: 16, 32, then 64 rows per program. Up to 32 activation rows:
    64 weight rows x 4 warps, 64-byte K steps (128 elements), and the most K splits that
    keep <= 4 programs per SM with >= 2 steps per split (``_split_capped``). Measured on
    H200 (M = 4 / 16, four decode shapes): 1.1-1.6x faster than the 128-byte steps at
    ~2 programs per SM that this replaced (81 registers per thread instead of 165 in the
    offline sm_90 build: twice the resident programs for the latency-bound decode).
    Beyond 32 rows: 128 x 8 warps with 128-byte steps and ~2 programs per SM (at M = 64
    the 64-byte steps won on 3 of 4 shapes and lost 2x on 4096 x 1024). ``waves`` replaces
    the split rule by ~``waves`` programs per SM (tuning).

    decode: "ptx" (the inline-PTX bf16x2 decode, the GPU default) or "fp32" (the
    interpreter's form; on a GPU only for the tuning comparison). scales: "words" (int32
    words of 4 blocks where the scale tensors are 4-byte aligned) or "bytes"; default
    DOT_SCALES. max_waves / min_steps: the split rule's caps (tuning)."""
    block_m = 16 if M <= 16 else (32 if M <= 32 else 64)
    block_n = block_n or (64 if M <= 32 else 128)
    warps = warps or (4 if block_n == 64 else 8)
    block_kh = block_kh or (64 if M <= 32 else 128)
    # at least 32 bytes: the K order (_kperm) permutes groups of 32
    block_kh = block_kh if KB >= block_kh // 8 else max(32, 8 * next_power_of_2(KB))
    tiles = cdiv(N, block_n) * cdiv(M, block_m)
    steps = cdiv(KB, block_kh // 8)
    if waves is None and M <= 32:
        n_split, per_split = _split_capped(tiles, steps, device, max_waves, min_steps)
    else:
        n_split, per_split = _split(tiles, steps, device, waves or 2)
    decode = decode or ("fp32" if interpreting() else "ptx")
    return ("dot", block_m, block_n, block_kh, n_split, per_split, warps, stages, decode,
            scales or DOT_SCALES)


# Rows served by the Gluon mma.sync kernel (nvfp4_mma.py) where it runs (sm_90, the
# verified Triton, 8-byte aligned packed operands), past the GEMV's rows.
MMA_MAX_ROWS = 16


def uses_mma(M, device, a_fp4=False, words_aligned=True):
    """Whether the launch rule takes the Gluon mma.sync kernel for these rows."""
    first = (W4A4_GEMV_MAX_ROWS if a_fp4 else GEMV_MAX_ROWS) + 1
    if not words_aligned or not first <= M <= MMA_MAX_ROWS:
        return False
    from . import nvfp4_mma  # Gluon: imported where it may run

    return nvfp4_mma.IN_RULE and nvfp4_mma.available(device)


def gemm_config(M, N, KH, device, a_fp4=False, words_aligned=True):
    """The launch rule: the GEMV up to GEMV_MAX_ROWS / W4A4_GEMV_MAX_ROWS rows (it reads
    int64 block words: 8-byte aligned operands); then, up to MMA_MAX_ROWS rows on sm_90,
    the Gluon mma.sync kernel; else the tl.dot kernel."""
    if M <= (W4A4_GEMV_MAX_ROWS if a_fp4 else GEMV_MAX_ROWS) and words_aligned:
        return gemv_config(M, N, KH // 8, device)
    if uses_mma(M, device, a_fp4, words_aligned):
        from . import nvfp4_mma

        return nvfp4_mma.mma_config(M, N, KH, device)
    return dot_config(M, N, KH // 8, device)


_COUNTERS = SplitCounters(min_count=4096)


def _aligned(t, nbytes):
    """Whether ``t`` can be read in ``nbytes``-wide elements: the GEMV's int64 block words
    (8), the dot kernel's int16 packed elements (2) and int32 scale words (4), the PDL
    prologue's bulk prefetch (16)."""
    return t.data_ptr() % nbytes == 0


# L2 prefetch of a PDL launch only for weights up to this size (the rule of flashrt-fp8-ffn's
# decode GEMM: a larger weight and the next kernel's, prefetched while it runs, overflow L2)
PREFETCH_MAX_BYTES = 16 << 20


# Programmatic dependent launch (+ L2 prefetch) only for grids of up to this many programs
# per SM. H200, tune_smallm.py (graph replay, M = 4 / 16 linear, W4A4 M = 16): at 4096 x 1024
# (256 programs, ~2 per SM) 8.1-8.3 µs with PDL against 9.0-9.2 without, and 4.9 against 5.5
# for the M = 1 GEMV there; with 512-1024 programs (1024 x 8192, 2048 x 16384, 16384 x 2048)
# 10-35% slower (the next kernel's programs, launched early, hold SM slots while they wait).
PDL_MAX_PROGRAMS_PER_SM = 2


def _uses_pdl(programs, device):
    return uses_pdl(device) and programs <= PDL_MAX_PROGRAMS_PER_SM * sm_count(device)


def _prefetches(b, sfb):
    """The PDL prologue's bulk prefetch needs 16-byte aligned rows and scale chunks."""
    N, KH = b.shape
    return N * KH <= PREFETCH_MAX_BYTES and KH % 16 == 0 and _aligned(b, 16) and _aligned(sfb, 16)


def _launch_gemm(a, sfa, b, sfb, bias, out, M, alpha, a_fp4, cfg=None, pdl=None, prefetch=None,
                 early_release=True, **mma_options):
    """out = alpha * A @ W^T (+ bias). ``cfg`` overrides the launch rule; ``pdl``,
    ``prefetch`` and ``early_release`` the launch options (tuning; see ``_uses_pdl``);
    ``mma_options`` go to ``nvfp4_mma.launch`` (``sum_batch``)."""
    N, KH = b.shape
    if cfg is None:
        cfg = gemm_config(M, N, KH, b.device, a_fp4,
                          _aligned(b, 8) and (not a_fp4 or _aligned(a, 8)))
    out_scale = 2.0 ** 18 if a_fp4 else 2.0 ** 9  # the 2^-9 carried by each dequantized operand
    n_col_super = cdiv(KH // 8, 4)
    bias_arg = bias if bias is not None else out
    if a_fp4:
        a_arg, sfa_arg = a, sfa
    else:
        a_arg, sfa_arg = bf16_words(a, "x"), b
    kind, bm, bn, bk, n_split, per_split, warps = cfg[:7]
    tiles = cdiv(N, bn) * (1 if kind in ("gemv", "mma") else cdiv(M, bm))
    split = n_split > 1
    ws = torch.empty(tiles * n_split * bm * bn if split else 1, dtype=_FP32, device=b.device)
    locks = _COUNTERS.get(b.device, tiles) if split else ws
    if kind == "mma":
        from . import nvfp4_mma  # Gluon: imported where it runs

        rule = nvfp4_mma.uses_pdl_rule(N, 2 * KH, a_fp4) and uses_pdl(b.device)
    else:
        rule = _uses_pdl(tiles * n_split, b.device)
    pdl = rule if pdl is None else pdl
    prefetch = (pdl if prefetch is None else prefetch) and _prefetches(b, sfb)
    launch = {"launch_pdl": True} if pdl else {}
    with device_guard(b):
        if kind == "mma":
            nvfp4_mma.launch(a_arg, sfa if a_fp4 else None, b, sfb, bias, out, M, alpha, cfg,
                             ws, locks, pdl=pdl, prefetch=prefetch, **mma_options)
        elif kind == "gemv":
            KB = KH // 8
            _gemv_kernel[(cdiv(N, bn) * n_split,)](
                a_arg.view(torch.int64) if a_fp4 else a_arg, sfa_arg, b.view(torch.int64), sfb,
                bias_arg, out, ws, locks, M, N, KB, n_col_super, per_split, n_split, out_scale,
                float(alpha), A_FP4=a_fp4, HAS_BIAS=bias is not None, SPLIT=split,
                EVEN_K=KB % bk == 0, BLOCK_M=bm, BLOCK_N=bn, BLOCK_B=bk, PDL=pdl,
                PREFETCH=prefetch, EARLY_RELEASE=early_release, num_warps=warps, num_stages=1,
                **launch)
        else:
            ptx = cfg[8] == "ptx" and _aligned(b, 2) and (not a_fp4 or _aligned(a, 2))
            words = cfg[9] == "words" and _aligned(sfb, 4)  # the weight's scales only
            _dot_kernel[(cdiv(N, bn) * n_split, cdiv(M, bm))](
                a_arg, sfa_arg, b, sfb, bias_arg, out, ws, locks, M, N, KH, n_col_super,
                per_split, n_split, out_scale, float(alpha), A_FP4=a_fp4,
                HAS_BIAS=bias is not None, SPLIT=split, BLOCK_M=bm, BLOCK_N=bn, BLOCK_KH=bk,
                PTX_DECODE=ptx, EVEN_K=(KH // 8) % (bk // 8) == 0, SCALE_WORDS=words, PDL=pdl,
                PREFETCH=prefetch, EARLY_RELEASE=early_release, num_warps=warps,
                num_stages=cfg[7], **launch)


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
