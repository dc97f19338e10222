"""Spatiotemporal layout, cache and requantization kernels (spec: postprocess-norms.md §6).

Thirteen public functions, each a thin wrapper (validate, allocate missing
outputs, launch) over an out-variant ``torch.library.custom_op`` that launches
one Triton kernel. Eager calls launch the kernel directly; under torch.compile
the op is what gets traced.

Kernels (six, shared by the functions):

* ``_transpose_kernel``  NCDHW <-> NDHWC/BLC, (B, C, S) <-> (B, S, C), in
  [channel-block x spatial-block] tiles: one side reads rows along S, the other
  writes rows along C, and Triton stages the tile through shared memory so
  both the load and the store are coalesced. Epilogues: bias, residual add,
  static FP8; a third source-row mode packs the causal-conv cache (prev0,
  prev1, cur0) along channels, each channel tile reading rows of one source.
* ``_plane_kernel``       copies / biases whole (H*W, 2*H*W or T*H*W) planes:
  temporal unshuffle, two-frame cache update, in-place channel bias.
* ``_channel_to_space_kernel``, ``_avg_pool_kernel``: [rows of one output plane
  x columns] tiles; the plane's (b, channel, frame) is decoded once per program.
  Channel-to-space loads contiguous input rows and interleaves the sf columns
  in registers (tl.interleave) into contiguous output rows; pooling loads
  contiguous input row pairs and splits them in registers. Both pass W as
  ``W_VEC * VEC`` so that the compiler sees W's power-of-two factor (W = 104 is
  not a multiple of 16, the only divisibility Triton infers) and emits 16-byte
  accesses.
* ``_patch_im2col_kernel`` moves bf16 pairs as 32-bit words, unmasked;
  ``_upsample_quant_kernel`` reads rows along W and writes channel runs.

Sizes that vary with the call (batch, frames) are ``do_not_specialize`` (a new
frame count never re-JITs); model-fixed sizes (channels, H*W) stay specialized
so that Triton sees 16-element divisibility and vectorizes. Index math is int32 unless a
tensor has 2^31 elements or more (then int64).
Launch configurations come from ``_tiles`` / ``_plane_tiles`` /
``_shuffle_tiles`` (analytical rules, their constants chosen with
``benchmarks/tune_layout.py``; no autotuning).

Limits of the original CUDA kernels that are gone here: no shared-memory
channel cap on the FP8 producers (any C, not only C % 4 == 0), any
``group_size`` for the pooling (not only <= 8), 64-bit totals everywhere, and
grids flattened on axis 0 (no 65535 limit).
"""

import struct
from typing import Optional

import torch
import triton
import triton.language as tl

from ._helpers import enter_dependent_launch, quantize_fp8_e4m3
from ._host import (cdiv, check_int, check_same_device, check_shape, check_tensor,
                    dependent_launch, device_guard, launch_directly, next_power_of_2)
from ._ops import add_op_namespace_prefix

_BF16 = torch.bfloat16
_FP8 = torch.float8_e4m3fn

# patch_im2col: 224x224x3 views cut into a 16x16 grid of 14x14 patches
IMG = 224
PATCH = 14
GRID = IMG // PATCH  # 16
FEAT = PATCH * PATCH * 3  # 588
# the same sizes as seen inside kernels (Triton reads only constexpr globals)
_K_IMG = tl.constexpr(IMG)
_K_PATCH = tl.constexpr(PATCH)
_K_FEAT = tl.constexpr(FEAT)

_TILE = 4096  # elements per program for the layout kernels (8 KB of bf16)
_SMALL = 1 << 22  # elements moved up to which bf16 transposes take _TILE // 2 tiles
_UPSAMPLE_WIDE_W = 192  # input width from which the upsample quantizer takes [C, 32] tiles
_IM2COL_BLOCK = 512  # 32-bit words per im2col program; divides a view (75264 = 147 * 512)


# ----------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------


@triton.jit
def _program_id(INT64: tl.constexpr):
    """Axis-0 program id; int64 only when the tensors need 64-bit offsets (the host's
    ``_needs_int64``): 32-bit index math is cheaper, 64-bit division most of all."""
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    return pid


@triton.jit
def _index(v, INT64: tl.constexpr):
    """A size argument in the kernel's index width."""
    if INT64:
        v = v.to(tl.int64)
    return v


@triton.jit(do_not_specialize=["B", "T"])
def _transpose_kernel(
    x_ptr, x2_ptr, out_ptr, bias_ptr, res_ptr, inv_scale,
    B, T, C, HW, n_tc,
    TO_CHANNELS_LAST: tl.constexpr, PACK3: tl.constexpr, HAS_BIAS: tl.constexpr,
    HAS_RES: tl.constexpr, QUANT: tl.constexpr, INT64: tl.constexpr, BC: tl.constexpr,
    BS: tl.constexpr, PDL: tl.constexpr = False,
):
    """(B, C, S) -> (B, S, C) when TO_CHANNELS_LAST, else (B, S, C) -> (B, C, S); S = T*HW.

    One [BC, BS] tile per program, channel tiles fastest. PACK3: out (B, S, 3C),
    channel p*C + c read from previous[b, c, p] (p < 2, ``x_ptr``, (B, C, 2, HW)) or
    current[b, c, 0] (p = 2, ``x2_ptr``); the n_tc channel tiles are 3 sources x
    cdiv(C, BC), so a tile reads rows of one source (p is per program).
    """
    enter_dependent_launch(PDL)
    pid = _program_id(INT64)
    S = _index(T, INT64) * HW
    n_ts = tl.cdiv(S, BS)
    i_c = pid % n_tc
    i_s = (pid // n_tc) % n_ts
    i_b = pid // n_tc // n_ts
    p = 0
    if PACK3:
        p = i_c // (n_tc // 3)
        i_c -= p * (n_tc // 3)
    o_c = i_c * BC + tl.arange(0, BC)
    o_s = i_s * BS + tl.arange(0, BS)
    m_c = o_c < C
    m = m_c[:, None] & (o_s < S)[None, :]
    o_cf = (i_b * C + o_c)[:, None] * S + o_s[None, :]  # channels-first (B, C, S) offsets
    # channels-last (B, S, C) offsets, (B, S, 3C) for PACK3
    o_cl = (i_b * S + o_s)[None, :] * (3 * C if PACK3 else C) + (p * C + o_c)[:, None]
    if TO_CHANNELS_LAST:
        o_out = o_cl
        if PACK3:
            row = tl.where(p < 2, (i_b * C + o_c) * 2 + p, i_b * C + o_c)
            b_x = tl.load(tl.where(p < 2, x_ptr, x2_ptr) + (row * S)[:, None] + o_s[None, :],
                          mask=m)
        else:
            b_x = tl.load(x_ptr + o_cf, mask=m)
    else:
        o_out = o_cf
        b_x = tl.load(x_ptr + o_cl, mask=m)
    if HAS_RES:
        b_r = tl.load(res_ptr + o_out, mask=m, other=0.0)
    if QUANT:
        y = quantize_fp8_e4m3(b_x.to(tl.float32), inv_scale)
    elif HAS_BIAS or HAS_RES:
        y = b_x.to(tl.float32)
        if HAS_BIAS:
            y += tl.load(bias_ptr + o_c, mask=m_c, other=0.0).to(tl.float32)[:, None]
        if HAS_RES:
            y += b_r.to(tl.float32)
        y = y.to(tl.bfloat16)
    else:
        y = b_x  # a pure copy keeps the bits
    tl.store(out_ptr + o_out, y, mask=m)


MODE_UNSHUFFLE, MODE_CACHE2, MODE_BIAS = 0, 1, 2  # _plane_kernel modes (host side)
_K_UNSHUFFLE = tl.constexpr(MODE_UNSHUFFLE)
_K_CACHE2 = tl.constexpr(MODE_CACHE2)
_K_BIAS = tl.constexpr(MODE_BIAS)


@triton.jit(do_not_specialize=["B", "T"])
def _plane_kernel(
    x_ptr, x2_ptr, out_ptr, bias_ptr,
    B, T, C, HW, n_tp, n_th,
    MODE: tl.constexpr, ONE_FRAME: tl.constexpr, BP: tl.constexpr, BHW: tl.constexpr,
    BLOCKS_FASTEST: tl.constexpr, INT64: tl.constexpr, PDL: tl.constexpr = False,
):
    """[BP planes, BHW elements] per program; consecutive programs take the next plane
    block (n_tp of them), or with BLOCKS_FASTEST the next element block of the same
    planes (n_th of them: long planes then stream through memory in order).

    MODE_UNSHUFFLE: out (B, C, 2T, HW) plane (b, c, 2t+g) <- x (B, 2C, T, HW) plane (b, gC+c, t).
    MODE_CACHE2:    out (B, C, 2, HW) planes (b, c, 0..1) <- cur frames T-2, T-1, one
                    contiguous 2*HW run per (b, c); ONE_FRAME: prev (x2) frame 1 and
                    cur frame 0, both loaded before either is stored, so ``out``
                    may be ``prev``.
    MODE_BIAS:      x (B, C, T*HW) in place: plane (b, c) += bias[c].
    """
    enter_dependent_launch(PDL)
    pid = _program_id(INT64)
    if MODE == _K_BIAS:
        L = _index(T, INT64) * HW  # plane length
        n_planes = _index(B, INT64) * C
    elif MODE == _K_UNSHUFFLE:
        L = HW
        n_planes = _index(B, INT64) * C * 2 * T
    else:
        L = HW if ONE_FRAME else 2 * HW
        n_planes = _index(B, INT64) * C
    if BLOCKS_FASTEST:
        i_h = pid % n_th
        i_p = pid // n_th
    else:
        i_p = pid % n_tp
        i_h = pid // n_tp
    o_p = i_p * BP + tl.arange(0, BP)
    o_h = i_h * BHW + tl.arange(0, BHW)
    m = (o_p < n_planes)[:, None] & (o_h < L)[None, :]
    if MODE == _K_UNSHUFFLE:
        ot = o_p % (2 * T)
        bc = o_p // (2 * T)
        c = bc % C
        b = bc // C
        src = (b * (2 * C) + (ot % 2) * C + c) * T + ot // 2
        b_x = tl.load(x_ptr + (src * L)[:, None] + o_h[None, :], mask=m)
        tl.store(out_ptr + (o_p * L)[:, None] + o_h[None, :], b_x, mask=m)
    elif MODE == _K_CACHE2:
        o_out = (o_p * 2 * HW)[:, None] + o_h[None, :]
        if ONE_FRAME:
            b_0 = tl.load(x2_ptr + ((o_p * 2 + 1) * HW)[:, None] + o_h[None, :], mask=m)
            b_1 = tl.load(x_ptr + (o_p * HW)[:, None] + o_h[None, :], mask=m)
            tl.store(out_ptr + o_out, b_0, mask=m)
            tl.store(out_ptr + o_out + HW, b_1, mask=m)
        else:
            b_x = tl.load(x_ptr + ((o_p * T + T - 2) * HW)[:, None] + o_h[None, :], mask=m)
            tl.store(out_ptr + o_out, b_x, mask=m)
    else:
        o_x = (o_p * L)[:, None] + o_h[None, :]
        b_x = tl.load(x_ptr + o_x, mask=m)
        b_b = tl.load(bias_ptr + o_p % C, mask=o_p < n_planes, other=0.0)
        y = b_x.to(tl.float32) + b_b.to(tl.float32)[:, None]
        tl.store(x_ptr + o_x, y.to(tl.bfloat16), mask=m)


@triton.jit
def _output_plane_tile(T_OUT, CO, n_tr, n_tw, INT64: tl.constexpr):
    """(plane, b, oc, ot, row tile, column tile) of this program over the output planes
    plane = (b * CO + oc) * T_OUT + ot, each split into n_tr x n_tw tiles (columns fastest)."""
    pid = _program_id(INT64)
    plane = pid // (n_tr * n_tw)
    return (plane, plane // T_OUT // CO, (plane // T_OUT) % CO, plane % T_OUT,
            (pid // n_tw) % n_tr, pid % n_tw)


@triton.jit
def _interleave(v0, v1, v2, v3, SF: tl.constexpr):
    """[R, BW] blocks v_dw -> [R, BW * SF] with column iw * SF + dw from v_dw (SF in 1, 2, 4)."""
    if SF == 1:
        return v0
    elif SF == 2:
        return tl.interleave(v0, v1)
    else:
        return tl.interleave(tl.interleave(v0, v2), tl.interleave(v1, v3))


@triton.jit(do_not_specialize=["B", "T"])
def _channel_to_space_kernel(
    x_ptr, out_ptr, B, T, CIN, CO, H, W_VEC, n_tr, n_tw,
    TF: tl.constexpr, SF: tl.constexpr, REPEATS: tl.constexpr, DROP: tl.constexpr,
    VEC: tl.constexpr, INTERLEAVE: tl.constexpr, INT64: tl.constexpr, BR: tl.constexpr,
    BW: tl.constexpr, PDL: tl.constexpr = False,
):
    """[BR output rows of one (b, oc, ot) plane, BW input columns] per program.

    Output row oh = ih*SF + dh, column ow = iw*SF + dw reads input row (ic, it, ih),
    column iw, with ic = e // REPEATS, e = oc*TF*SF^2 + (dt*SF + dh)*SF + dw. For each
    dw the block is one contiguous load along the input row; the SF blocks are
    interleaved in registers (INTERLEAVE, SF in 1, 2, 4) into one contiguous store
    along the output row, or written with SF strided 2-byte stores (any SF; about
    10x slower at SF = 2, tune_layout.py, so only for the other SF). When SF
    divides REPEATS every dw reads the same channel: one load serves all.
    W = W_VEC * VEC tells the compiler W's power-of-two factor (vector width).
    The host check Cin * REPEATS >= Co * TF * SF^2 keeps ic < CIN.
    """
    enter_dependent_launch(PDL)
    W = W_VEC * VEC
    OH = H * SF
    OW = W * SF
    T_OUT = _index(T, INT64) * TF - DROP
    plane, b, oc, ot, i_r, i_w = _output_plane_tile(T_OUT, CO, n_tr, n_tw, INT64)
    ft = ot + DROP
    dt = ft % TF
    it = ft // TF
    oh = i_r * BR + tl.arange(0, BR)
    ih = oh // SF
    e0 = oc * (TF * SF * SF) + (dt * SF + oh % SF) * SF  # [BR]: e of dw = 0
    o_w = i_w * BW + tl.arange(0, BW)
    m = (oh < OH)[:, None] & (o_w < W)[None, :]
    o_in = ((it * H + ih) * W)[:, None] + o_w[None, :]  # within an input channel
    o_row = (plane * OH + oh) * OW
    CH = _index(T, INT64) * H * W  # one input channel
    SHARED: tl.constexpr = REPEATS % SF == 0  # every dw reads channel e0 // REPEATS
    p_in = x_ptr + o_in
    v0 = tl.load(p_in + ((b * CIN + e0 // REPEATS) * CH)[:, None], mask=m)
    if INTERLEAVE:
        v1 = v0
        v2 = v0
        v3 = v0
        if not SHARED:
            v1 = tl.load(p_in + ((b * CIN + (e0 + 1) // REPEATS) * CH)[:, None], mask=m)
            if SF == 4:
                v2 = tl.load(p_in + ((b * CIN + (e0 + 2) // REPEATS) * CH)[:, None], mask=m)
                v3 = tl.load(p_in + ((b * CIN + (e0 + 3) // REPEATS) * CH)[:, None], mask=m)
        o_ow = i_w * (BW * SF) + tl.arange(0, BW * SF)
        m_o = (oh < OH)[:, None] & (o_ow < OW)[None, :]
        tl.store(out_ptr + o_row[:, None] + o_ow[None, :], _interleave(v0, v1, v2, v3, SF),
                 mask=m_o)
    else:
        p_out = out_ptr + o_row[:, None] + (o_w * SF)[None, :]
        tl.store(p_out, v0, mask=m)
        for dw in tl.static_range(1, SF):
            if not SHARED:
                v0 = tl.load(p_in + ((b * CIN + (e0 + dw) // REPEATS) * CH)[:, None], mask=m)
            tl.store(p_out + dw, v0, mask=m)


@triton.jit(do_not_specialize=["B", "T"])
def _avg_pool_kernel(
    x_ptr, out_ptr, B, T, C, CO, H, W_VEC, n_tr, n_tw,
    FT: tl.constexpr, FS: tl.constexpr, G: tl.constexpr, VEC: tl.constexpr,
    INT64: tl.constexpr, BR: tl.constexpr, BW: tl.constexpr, PDL: tl.constexpr = False,
):
    """[BR output rows of one (b, oc, ot) plane, BW output columns] per program.

    Sums the G expanded channels oc*G + g in order g = 0..G-1 in fp32 (starting
    from +0), front-padded frames read as +0, then one IEEE division by G. The
    channel, frame and row offset of each g are per-program scalars. With FS = 2
    and G even, g = 2j and 2j + 1 are the two columns of one input pixel pair: one
    contiguous [BR, 2*BW] load split in registers; otherwise one strided load per g.
    W = W_VEC * VEC tells the compiler W's power-of-two factor (vector width).
    """
    enter_dependent_launch(PDL)
    W = W_VEC * VEC
    HO = H // FS
    WO = W // FS
    T_OUT = tl.cdiv(_index(T, INT64), FT)
    PAD = T_OUT * FT - T
    plane, b, oc, ot, i_r, i_w = _output_plane_tile(T_OUT, CO, n_tr, n_tw, INT64)
    oh = i_r * BR + tl.arange(0, BR)
    o_w = i_w * BW + tl.arange(0, BW)
    m_out = (oh < HO)[:, None] & (o_w < WO)[None, :]
    o_rows = (oh * FS * W)[:, None]
    acc = tl.zeros([BR, BW], dtype=tl.float32)
    PAIRS: tl.constexpr = FS == 2 and G % 2 == 0
    for j in tl.static_range(G // 2 if PAIRS else G):
        e = oc * G + (2 * j if PAIRS else j)
        dw = e % FS
        dh = (e // FS) % FS
        dt = (e // (FS * FS)) % FT
        c = e // (FS * FS * FT)
        f = ot * FT + dt - PAD
        row0 = (((b * C + c) * T + f) * H + dh) * W  # scalar; f < 0: a padded frame
        if PAIRS:
            o_c2 = i_w * (2 * BW) + tl.arange(0, 2 * BW)
            m2 = (oh < HO)[:, None] & (o_c2 < W)[None, :] & (f >= 0)
            v = tl.load(x_ptr + row0 + o_rows + o_c2[None, :], mask=m2, other=0.0)
            v_0, v_1 = tl.split(tl.reshape(v, [BR, BW, 2]))
            acc += v_0.to(tl.float32)
            acc += v_1.to(tl.float32)
        else:
            v = tl.load(x_ptr + row0 + dw + o_rows + (o_w * FS)[None, :], mask=m_out & (f >= 0),
                        other=0.0)
            acc += v.to(tl.float32)
    if G & (G - 1) == 0:
        y = acc * (1.0 / G)  # exact scaling by 2^-k: the bits of the IEEE division
    else:
        y = tl.div_rn(acc, tl.full([BR, BW], G, tl.float32))
    tl.store(out_ptr + (plane * HO + oh)[:, None] * WO + o_w[None, :], y.to(tl.bfloat16),
             mask=m_out)


@triton.jit
def _patch_im2col_kernel(x_ptr, out_ptr, BLOCK: tl.constexpr, PDL: tl.constexpr = False):
    """Over 32-bit words (bf16 pairs; a 14x3 patch line is 42 elements, so no pair
    straddles two lines): program (v, i) writes words [i*BLOCK, (i+1)*BLOCK) of view
    v's output. Each patch row (v, ph) is a 14x672 input block that maps to 16x588
    contiguous output elements; constant divisors only, int32 within a view, and
    BLOCK divides a view, so nothing is masked."""
    enter_dependent_launch(PDL)
    VIEW: tl.constexpr = _K_IMG * _K_IMG * 3 // 2  # 75264 words
    PROW: tl.constexpr = _K_PATCH * _K_IMG * 3 // 2  # 4704 words: one row of 16 patches
    LINE: tl.constexpr = _K_IMG * 3 // 2  # 336
    SEG: tl.constexpr = _K_PATCH * 3 // 2  # 21: one patch line
    FEAT_: tl.constexpr = _K_FEAT // 2  # 294
    N_BLK: tl.constexpr = VIEW // BLOCK
    pid = tl.program_id(0)
    base = (pid // N_BLK).to(tl.int64) * VIEW
    o = (pid % N_BLK) * BLOCK + tl.arange(0, BLOCK)
    blk = o // PROW
    j = o % PROW
    k = j % FEAT_
    o_x = blk * PROW + (k // SEG) * LINE + (j // FEAT_) * SEG + k % SEG
    tl.store(out_ptr + base + o, tl.load(x_ptr + base + o_x))


@triton.jit(do_not_specialize=["N"])
def _upsample_quant_kernel(
    x_ptr, out_ptr, inv_scale, N, C, H, W, n_tc, n_tw, BC: tl.constexpr, BW: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """x (N, C, H, W) -> out (N, 2H, 2W, C) fp8: a [BC, BW] tile of input row (n, h)
    is read along W, quantized once and written to its four nearest-neighbour
    positions along C."""
    enter_dependent_launch(PDL)
    pid = tl.program_id(0).to(tl.int64)
    i_c = pid % n_tc
    i_w = (pid // n_tc) % n_tw
    nh = pid // n_tc // n_tw  # n * H + h
    o_c = i_c * BC + tl.arange(0, BC)
    o_w = i_w * BW + tl.arange(0, BW)
    m = (o_c < C)[:, None] & (o_w < W)[None, :]
    n = nh // H
    h = nh % H
    b_x = tl.load(x_ptr + ((n * C + o_c)[:, None] * H + h) * W + o_w[None, :], mask=m)
    q = quantize_fp8_e4m3(b_x.to(tl.float32), inv_scale)
    for dy in tl.static_range(2):
        for dx in tl.static_range(2):
            o_out = ((2 * nh + dy) * (2 * W) + 2 * o_w[None, :] + dx) * C + o_c[:, None]
            tl.store(out_ptr + o_out, q, mask=m)


# ----------------------------------------------------------------------------
# Launch configuration (analytical; no autotuning)
# ----------------------------------------------------------------------------


def _channel_block(C, cap, floor):
    """Power-of-two channel block in [floor, cap] that pads C the least (ties: larger).

    Covering all of C in one block makes the channels-last side of a tile one
    contiguous run; C = 96 takes 3 x 32 rather than 2 x 64 (a half-empty tile).
    """
    lo = min(cap, max(4, next_power_of_2(min(C, floor))))
    blocks = [b for b in (4, 8, 16, 32, 64, 128) if lo <= b <= cap]
    return min(blocks, key=lambda b: (cdiv(C, b) * b, -b))


def _tiles(C, S, out_bytes, n, whole_rows):
    """(BC, BS, num_warps) of the transpose kernel (tune_layout.py on H200):

    * ``whole_rows`` (channels-last input whose channels-first side is only the store)
      and C <= 128: one channel block covers C, so each input row is one contiguous
      read (96 channels: [128, 32] tiles, 2.5-7% faster than [32, 128]; with a residual,
      a second channels-first stream, [32, 128] stays faster);
    * otherwise the least-padding block; fp8 outputs want longer channel runs (bytes
      per contiguous store) than bf16;
    * ~_TILE elements a program, half that for bf16 up to _SMALL elements moved
      (``n``): more programs for small calls (the 16-channel Wan latent; the 96-channel
      causal cache pack, 3.94 -> 3.80 us).
    """
    if out_bytes == 1:
        bc = _channel_block(C, cap=128, floor=32)
    elif whole_rows and C <= 128:
        bc = max(4, next_power_of_2(C))
    else:
        bc = _channel_block(C, cap=64, floor=16)
    tile = _TILE // 2 if out_bytes == 2 and n <= _SMALL else _TILE
    bs = max(16, min(1024, tile // bc, next_power_of_2(S)))
    return bc, bs, _warps(bc * bs)


# _plane_kernel mode -> (elements a program, widest plane block, num_warps, element
# blocks fastest): the fastest settings of tune_layout.py on the Wan VAE shapes (H200)
_PLANE_TILES = {MODE_UNSHUFFLE: (2048, 2048, 4, True), MODE_CACHE2: (4096, 4096, 4, False),
                MODE_BIAS: (1024, 1024, 4, True)}


def _plane_tiles(mode, n_planes, length):
    """(BP, BHW, num_warps, BLOCKS_FASTEST) of the plane kernel: [planes, contiguous
    plane block] tiles and the program order."""
    tile, widest, warps, blocks_fastest = _PLANE_TILES[mode]
    bhw = max(16, min(widest, next_power_of_2(length)))
    bp = max(1, min(tile // bhw, next_power_of_2(n_planes)))
    return bp, bhw, warps, blocks_fastest


def _shuffle_tiles(rows, width, sf):
    """(BR, BW, num_warps) for [rows of one plane, input columns] tiles whose output
    is SF times wider: about _TILE output elements a program, BW up to 128 columns."""
    bw = max(8, min(128, next_power_of_2(width)))
    br = max(1, min(_TILE // (bw * sf), next_power_of_2(rows)))
    return br, bw, _warps(br * bw * sf)


def _pow2_factor(n, cap=8):
    """Largest power of two <= cap dividing n (8 bf16 = one 16-byte vector)."""
    return min(cap, n & -n)


def _needs_int64(*tensors):
    """64-bit index math once an offset into one of ``tensors`` can pass int32 (offsets
    of masked-off lanes may wrap: they are never dereferenced)."""
    return max(t.numel() for t in tensors) > 2**31 - 1


def _warps(elements):
    return max(1, min(8, elements // 1024))


def _fp32_reciprocal(scale):
    """fp32(1 / fp32(scale)): the one reciprocal the spec multiplies by.

    Double division then rounding to fp32 equals the correctly rounded fp32
    division (53 >= 2*24 + 2 bits, so the double rounding is innocuous)."""
    def f32(v):
        return struct.unpack("f", struct.pack("f", v))[0]
    return f32(1.0 / f32(float(scale)))


# ----------------------------------------------------------------------------
# Launchers (shared by the eager path and the ops)
# ----------------------------------------------------------------------------


def _config(defaults, config):
    """``defaults`` (a tuple of launch settings) with the entries of ``config`` (BC/BR,
    BS/BW, num_warps, ... by position) that are not None: the tuning script's override."""
    if not config:
        return defaults
    config = tuple(config) + (None,) * (len(defaults) - len(config))
    return tuple(d if c is None else c for d, c in zip(defaults, config))


def _launch_transpose(x, out, *, B, C, T, HW, to_channels_last, x2=None, bias=None,
                      residual=None, scale=None, config=None):
    quant = scale is not None
    int64 = _needs_int64(*(t for t in (x, x2, out, residual) if t is not None))
    whole_rows = not to_channels_last and residual is None
    tiles = _tiles(C, T * HW, out.element_size(), out.numel(), whole_rows)
    bc, bs, warps, int64 = _config(tiles + (int64,), config)
    n_tc = cdiv(C, bc) * (1 if x2 is None else 3)  # PACK3: three sources
    grid = (B * n_tc * cdiv(T * HW, bs),)
    with device_guard(x):
        _transpose_kernel[grid](
            x, x if x2 is None else x2, out, x if bias is None else bias,
            x if residual is None else residual, _fp32_reciprocal(scale) if quant else 1.0,
            B, T, C, HW, n_tc,
            TO_CHANNELS_LAST=to_channels_last, PACK3=x2 is not None, HAS_BIAS=bias is not None,
            HAS_RES=residual is not None, QUANT=quant, INT64=int64, BC=bc, BS=bs,
            num_warps=warps, **dependent_launch(x.device),
        )


def _launch_plane(mode, x, out, *, B, T, C, HW, x2=None, bias=None, config=None):
    if mode == MODE_BIAS:
        n_planes, length = B * C, T * HW
    elif mode == MODE_UNSHUFFLE:
        n_planes, length = B * C * 2 * T, HW
    else:
        n_planes, length = B * C, HW if T == 1 else 2 * HW
    int64 = _needs_int64(*(t for t in (x, x2, out) if t is not None))
    bp, bhw, warps, blocks_fastest, int64 = _config(
        _plane_tiles(mode, n_planes, length) + (int64,), config)
    n_tp, n_th = cdiv(n_planes, bp), cdiv(length, bhw)
    # the in-place bias and the two-frame cache measured slower with PDL, back to back
    # and after cuBLAS (H200, flashrt_tools/bench/pdl_ab.py): launched plainly
    launch = dependent_launch(x.device) if mode == MODE_UNSHUFFLE else {}
    with device_guard(x):
        _plane_kernel[(n_tp * n_th,)](
            x, x if x2 is None else x2, out, x if bias is None else bias, B, T, C, HW, n_tp,
            n_th, MODE=mode, ONE_FRAME=T == 1, BP=bp, BHW=bhw, BLOCKS_FASTEST=blocks_fastest,
            INT64=int64, num_warps=warps, **launch,
        )


def _dims5(t):
    return tuple(int(s) for s in t.shape)


# ----------------------------------------------------------------------------
# Shape checks shared by the wrappers and the fakes
# ----------------------------------------------------------------------------


def _check_5d(t, name, layout="(B, C, T, H, W)"):
    if t.dim() != 5:
        raise RuntimeError(f"{name} must be a 5-D {layout} tensor, got {t.dim()} dimensions")
    if any(s <= 0 for s in t.shape):
        raise RuntimeError(f"{name} dimensions must be positive, got {tuple(t.shape)}")


def _check_positive(value, name):
    check_int(value, name, minimum=1)


def _check_scale(scale):
    if isinstance(scale, bool) or not isinstance(scale, (int, float, torch.SymFloat)):
        raise RuntimeError(f"scale must be a Python float, got {type(scale).__name__}")
    if not scale > 0 or scale == float("inf"):
        raise RuntimeError(f"scale must be > 0 and finite, got {scale}")


def _c2s_out_shape(x, out_channels, temporal_factor, spatial_factor, repeats, first_chunk):
    B, cin, T, H, W = x.shape
    for name, v in (("out_channels", out_channels), ("temporal_factor", temporal_factor),
                    ("spatial_factor", spatial_factor), ("repeats", repeats)):
        _check_positive(v, name)
    if not isinstance(first_chunk, bool):
        raise RuntimeError(f"first_chunk must be a bool, got {type(first_chunk).__name__}")
    if cin * repeats < out_channels * temporal_factor * spatial_factor ** 2:
        raise RuntimeError(
            "input channels times repeats must cover the channel-to-space output: "
            f"{cin} * {repeats} < {out_channels} * {temporal_factor} * {spatial_factor}^2")
    t_out = T * temporal_factor - (temporal_factor - 1 if first_chunk else 0)
    return (B, out_channels, t_out, H * spatial_factor, W * spatial_factor)


def _pool_out_shape(x, out_channels, factor_t, factor_s, group_size):
    B, C, T, H, W = x.shape
    for name, v in (("out_channels", out_channels), ("factor_t", factor_t),
                    ("factor_s", factor_s), ("group_size", group_size)):
        _check_positive(v, name)
    if H % factor_s != 0 or W % factor_s != 0:
        raise RuntimeError(f"H and W must be divisible by factor_s = {factor_s}, got H={H}, W={W}")
    if C * factor_t * factor_s ** 2 != out_channels * group_size:
        raise RuntimeError(
            "C * factor_t * factor_s^2 must equal out_channels * group_size: "
            f"{C} * {factor_t} * {factor_s}^2 != {out_channels} * {group_size}")
    return (B, out_channels, (T + factor_t - 1) // factor_t, H // factor_s, W // factor_s)


def _check_patch_input(x):
    if x.dim() != 4 or tuple(x.shape[1:]) != (IMG, IMG, 3) or x.shape[0] <= 0:
        raise RuntimeError(f"x must have shape (NV, {IMG}, {IMG}, 3) with NV > 0 (NHWC views), "
                           f"got {tuple(x.shape)}")


def _check_upsample_input(x):
    if x.dim() != 4:
        raise RuntimeError(f"x must be a 4-D (N, C, H, W) tensor, got {x.dim()} dimensions")
    if any(s <= 0 for s in x.shape):
        raise RuntimeError(f"x dimensions must be positive, got {tuple(x.shape)}")


# ----------------------------------------------------------------------------
# Ops (out-variant, void) + fakes for torch.compile
# ----------------------------------------------------------------------------


def _ncdhw_to_blc(x, out):
    B, C, T, H, W = _dims5(x)
    _launch_transpose(x, out, B=B, C=C, T=T, HW=H * W, to_channels_last=True)


@torch.library.custom_op(add_op_namespace_prefix("ncdhw_to_blc_bf16"), mutates_args=("out",))
def _ncdhw_to_blc_bf16_op(x: torch.Tensor, out: torch.Tensor) -> None:
    _ncdhw_to_blc(x, out)


@torch.library.register_fake(add_op_namespace_prefix("ncdhw_to_blc_bf16"))
def _ncdhw_to_blc_bf16_fake(x, out):
    _check_5d(x, "x")
    B, C, T, H, W = x.shape
    check_shape(out, "out", (B, T * H * W, C), "out must have shape (B, T * H * W, C)")


def _patch_im2col(x, out, config=None):
    block, warps = _config((_IM2COL_BLOCK, 4), config)
    with device_guard(x):
        _patch_im2col_kernel[(x.shape[0] * ((IMG * IMG * 3 // 2) // block),)](
            x.view(-1).view(torch.int32), out.view(torch.int32), BLOCK=block, num_warps=warps,
            **dependent_launch(x.device))


@torch.library.custom_op(add_op_namespace_prefix("patch_im2col_bf16"), mutates_args=("out",))
def _patch_im2col_bf16_op(x: torch.Tensor, out: torch.Tensor) -> None:
    _patch_im2col(x, out)


@torch.library.register_fake(add_op_namespace_prefix("patch_im2col_bf16"))
def _patch_im2col_bf16_fake(x, out):
    _check_patch_input(x)
    check_shape(out, "out", (x.shape[0] * GRID * GRID, FEAT), "out must have shape (NV * 256, 588)")


def _time_unshuffle2(x, out):
    B, C2, T, H, W = _dims5(x)
    _launch_plane(MODE_UNSHUFFLE, x, out, B=B, T=T, C=C2 // 2, HW=H * W)


@torch.library.custom_op(add_op_namespace_prefix("time_unshuffle2_bf16"), mutates_args=("out",))
def _time_unshuffle2_bf16_op(x: torch.Tensor, out: torch.Tensor) -> None:
    _time_unshuffle2(x, out)


def _check_unshuffle(x):
    _check_5d(x, "x")
    if x.shape[1] % 2 != 0:
        raise RuntimeError(f"x.shape[1] (channels) must be even, got {x.shape[1]}")
    B, C2, T, H, W = x.shape
    return (B, C2 // 2, 2 * T, H, W)


@torch.library.register_fake(add_op_namespace_prefix("time_unshuffle2_bf16"))
def _time_unshuffle2_bf16_fake(x, out):
    check_shape(out, "out", _check_unshuffle(x), "out must have shape (B, C / 2, 2 * T, H, W)")


def _add_bias_ncdhw(x, bias):
    B, C, T, H, W = _dims5(x)
    _launch_plane(MODE_BIAS, x, x, B=B, T=T, C=C, HW=H * W, bias=bias)


@torch.library.custom_op(add_op_namespace_prefix("add_bias_ncdhw_bf16"), mutates_args=("x",))
def _add_bias_ncdhw_bf16_op(x: torch.Tensor, bias: torch.Tensor) -> None:
    _add_bias_ncdhw(x, bias)


@torch.library.register_fake(add_op_namespace_prefix("add_bias_ncdhw_bf16"))
def _add_bias_ncdhw_bf16_fake(x, bias):
    _check_5d(x, "x")
    check_shape(bias, "bias", (x.shape[1],), "bias must have shape (C,)")


def _update_cache2(cur, prev, out):
    B, C, T, H, W = _dims5(cur)
    _launch_plane(MODE_CACHE2, cur, out, B=B, T=T, C=C, HW=H * W, x2=prev)


@torch.library.custom_op(add_op_namespace_prefix("update_cache2_ncdhw_bf16"),
                         mutates_args=("out",))
def _update_cache2_ncdhw_bf16_op(cur: torch.Tensor, prev: torch.Tensor, out: torch.Tensor) -> None:
    _update_cache2(cur, prev, out)


def _cache2_shape(cur, prev):
    _check_5d(cur, "cur")
    B, C, T, H, W = cur.shape
    check_shape(prev, "prev", (B, C, 2, H, W), "prev must have shape (B, C, 2, H, W)")
    return (B, C, 2, H, W)


@torch.library.register_fake(add_op_namespace_prefix("update_cache2_ncdhw_bf16"))
def _update_cache2_ncdhw_bf16_fake(cur, prev, out):
    check_shape(out, "out", _cache2_shape(cur, prev), "out must have shape (B, C, 2, H, W)")


def _channel_to_space3d(x, out, out_channels, temporal_factor, spatial_factor, repeats,
                        first_chunk, config=None):
    B, cin, T, H, W = _dims5(x)
    sf = spatial_factor
    t_out = T * temporal_factor - (temporal_factor - 1 if first_chunk else 0)
    br, bw, warps, interleave, int64 = _config(
        _shuffle_tiles(H * sf, W, sf) + (sf in (1, 2, 4), _needs_int64(x, out)), config)
    vec = _pow2_factor(W)
    n_tr, n_tw = cdiv(H * sf, br), cdiv(W, bw)
    with device_guard(x):
        _channel_to_space_kernel[(B * out_channels * t_out * n_tr * n_tw,)](
            x, out, B, T, cin, out_channels, H, W // vec, n_tr, n_tw,
            TF=temporal_factor, SF=sf, REPEATS=repeats,
            DROP=temporal_factor - 1 if first_chunk else 0, VEC=vec, INTERLEAVE=interleave,
            INT64=int64, BR=br, BW=bw, num_warps=warps, **dependent_launch(x.device),
        )


@torch.library.custom_op(add_op_namespace_prefix("channel_to_space3d_bf16"),
                         mutates_args=("out",))
def _channel_to_space3d_bf16_op(
    x: torch.Tensor, out_channels: int, temporal_factor: int, spatial_factor: int,
    repeats: int, first_chunk: bool, out: torch.Tensor,
) -> None:
    _channel_to_space3d(x, out, out_channels, temporal_factor, spatial_factor, repeats,
                        first_chunk)


@torch.library.register_fake(add_op_namespace_prefix("channel_to_space3d_bf16"))
def _channel_to_space3d_bf16_fake(x, out_channels, temporal_factor, spatial_factor, repeats,
                                  first_chunk, out):
    _check_5d(x, "x")
    shape = _c2s_out_shape(x, out_channels, temporal_factor, spatial_factor, repeats, first_chunk)
    check_shape(out, "out", shape, "channel_to_space3d_bf16 shape contract failed: out must "
                f"have shape {shape}")


def _pack_causal_cache3(previous, current, out, config=None):
    B, C, _, H, W = _dims5(previous)
    _launch_transpose(previous, out, B=B, C=C, T=1, HW=H * W, to_channels_last=True,
                      x2=current, config=config)


@torch.library.custom_op(add_op_namespace_prefix("pack_causal_cache3_nhwc_bf16"),
                         mutates_args=("out",))
def _pack_causal_cache3_nhwc_bf16_op(previous: torch.Tensor, current: torch.Tensor,
                                     out: torch.Tensor) -> None:
    _pack_causal_cache3(previous, current, out)


def _pack_shape(previous, current):
    _check_5d(current, "current")
    _check_5d(previous, "previous")
    if current.shape[2] != 1:
        raise RuntimeError(f"current must have one frame, got {current.shape[2]}")
    B, C, _, H, W = current.shape
    check_shape(previous, "previous", (B, C, 2, H, W), "previous must have shape (B, C, 2, H, W)")
    return (B, H, W, 3 * C)


@torch.library.register_fake(add_op_namespace_prefix("pack_causal_cache3_nhwc_bf16"))
def _pack_causal_cache3_nhwc_bf16_fake(previous, current, out):
    check_shape(out, "out", _pack_shape(previous, current),
                "causal cache pack shape contract failed: out must have shape (B, H, W, 3 * C)")


def _avg_pool3d_channels(x, out, out_channels, factor_t, factor_s, group_size, config=None):
    B, C, T, H, W = _dims5(x)
    ho, wo = H // factor_s, W // factor_s
    br, bw, _ = _shuffle_tiles(ho, wo, 1)
    # each output sums G inputs: 4 warps on the [32, 64] tile of the Wan shape beat 2
    br, bw, warps, int64 = _config((br, bw, _warps(2 * br * bw), _needs_int64(x, out)), config)
    vec = _pow2_factor(W)
    n_tr, n_tw = cdiv(ho, br), cdiv(wo, bw)
    t_out = cdiv(T, factor_t)
    with device_guard(x):
        _avg_pool_kernel[(B * out_channels * t_out * n_tr * n_tw,)](
            x, out, B, T, C, out_channels, H, W // vec, n_tr, n_tw,
            FT=factor_t, FS=factor_s, G=group_size, VEC=vec, INT64=int64, BR=br, BW=bw,
            num_warps=warps, **dependent_launch(x.device),
        )


@torch.library.custom_op(add_op_namespace_prefix("avg_pool3d_channels_bf16"),
                         mutates_args=("out",))
def _avg_pool3d_channels_bf16_op(x: torch.Tensor, out_channels: int, factor_t: int,
                                 factor_s: int, group_size: int, out: torch.Tensor) -> None:
    _avg_pool3d_channels(x, out, out_channels, factor_t, factor_s, group_size)


@torch.library.register_fake(add_op_namespace_prefix("avg_pool3d_channels_bf16"))
def _avg_pool3d_channels_bf16_fake(x, out_channels, factor_t, factor_s, group_size, out):
    _check_5d(x, "x")
    shape = _pool_out_shape(x, out_channels, factor_t, factor_s, group_size)
    check_shape(out, "out", shape, f"out has the wrong pooled NCDHW shape: expected {shape}")


def _ndhwc_to_ncdhw(x, out, bias=None, residual=None):
    B, T, H, W, C = _dims5(x)
    _launch_transpose(x, out, B=B, C=C, T=T, HW=H * W, to_channels_last=False, bias=bias,
                      residual=residual)


def _ncdhw_of(x):
    _check_5d(x, "x", "(B, T, H, W, C)")
    B, T, H, W, C = x.shape
    return (B, C, T, H, W)


@torch.library.custom_op(add_op_namespace_prefix("ndhwc_to_ncdhw_bf16"), mutates_args=("out",))
def _ndhwc_to_ncdhw_bf16_op(x: torch.Tensor, out: torch.Tensor) -> None:
    _ndhwc_to_ncdhw(x, out)


@torch.library.register_fake(add_op_namespace_prefix("ndhwc_to_ncdhw_bf16"))
def _ndhwc_to_ncdhw_bf16_fake(x, out):
    check_shape(out, "out", _ncdhw_of(x), "out must have shape (B, C, T, H, W)")


@torch.library.custom_op(add_op_namespace_prefix("ndhwc_to_ncdhw_bias_bf16"),
                         mutates_args=("out",))
def _ndhwc_to_ncdhw_bias_bf16_op(x: torch.Tensor, bias: torch.Tensor, out: torch.Tensor) -> None:
    _ndhwc_to_ncdhw(x, out, bias=bias)


@torch.library.register_fake(add_op_namespace_prefix("ndhwc_to_ncdhw_bias_bf16"))
def _ndhwc_to_ncdhw_bias_bf16_fake(x, bias, out):
    shape = _ncdhw_of(x)
    check_shape(bias, "bias", (shape[1],), "bias must have shape (C,)")
    check_shape(out, "out", shape, "out must have shape (B, C, T, H, W)")


@torch.library.custom_op(add_op_namespace_prefix("ndhwc_to_ncdhw_add_bf16"),
                         mutates_args=("out",))
def _ndhwc_to_ncdhw_add_bf16_op(x: torch.Tensor, residual: torch.Tensor,
                                out: torch.Tensor) -> None:
    _ndhwc_to_ncdhw(x, out, residual=residual)


@torch.library.register_fake(add_op_namespace_prefix("ndhwc_to_ncdhw_add_bf16"))
def _ndhwc_to_ncdhw_add_bf16_fake(x, residual, out):
    shape = _ncdhw_of(x)
    check_shape(residual, "residual", shape, "residual must have shape (B, C, T, H, W)")
    check_shape(out, "out", shape, "out must have shape (B, C, T, H, W)")


def _ncdhw_quantize_ndhwc(x, scale, out):
    B, C, T, H, W = _dims5(x)
    _launch_transpose(x, out, B=B, C=C, T=T, HW=H * W, to_channels_last=True, scale=scale)


@torch.library.custom_op(add_op_namespace_prefix("ncdhw_quantize_fp8_static_ndhwc_bf16"),
                         mutates_args=("out",))
def _ncdhw_quantize_fp8_static_ndhwc_bf16_op(x: torch.Tensor, scale: float,
                                             out: torch.Tensor) -> None:
    _ncdhw_quantize_ndhwc(x, scale, out)


def _ndhwc_of(x):
    _check_5d(x, "x")
    B, C, T, H, W = x.shape
    return (B, T, H, W, C)


@torch.library.register_fake(add_op_namespace_prefix("ncdhw_quantize_fp8_static_ndhwc_bf16"))
def _ncdhw_quantize_fp8_static_ndhwc_bf16_fake(x, scale, out):
    check_shape(out, "out", _ndhwc_of(x), "out must have shape (B, T, H, W, C)")


def _upsample2x_quantize(x, scale, out, config=None):
    """``config``: (BC, BW, warps) overrides (None entries keep the rule's), the tune
    script's candidates."""
    N, C, H, W = (int(s) for s in x.shape)
    if W >= _UPSAMPLE_WIDE_W:
        # whole channel runs (up to 128) of 32 pixels: each output pixel's C bytes come
        # from one program (H200, 9x96x120x208: 35.14 us against 40.42 for 32 x 128;
        # at W = 104 the 32-wide tiles' masked tail made it slower, 30.18 vs 26.08)
        bc, bw, warps = _channel_block(C, cap=128, floor=128), 32, 8
    else:
        bc = _channel_block(C, cap=128, floor=32)
        bw = max(16, min(256, _TILE // bc, next_power_of_2(W)))
        warps = _warps(bc * bw)
    bc, bw, warps = _config((bc, bw, warps), config)
    n_tc, n_tw = cdiv(C, bc), cdiv(W, bw)
    with device_guard(x):
        _upsample_quant_kernel[(N * H * n_tc * n_tw,)](
            x, out, _fp32_reciprocal(scale), N, C, H, W, n_tc, n_tw, BC=bc, BW=bw,
            num_warps=warps, **dependent_launch(x.device),
        )


@torch.library.custom_op(add_op_namespace_prefix("upsample2x_quantize_fp8_static_nhwc_bf16"),
                         mutates_args=("out",))
def _upsample2x_quantize_fp8_static_nhwc_bf16_op(x: torch.Tensor, scale: float,
                                                 out: torch.Tensor) -> None:
    _upsample2x_quantize(x, scale, out)


def _upsample_shape(x):
    _check_upsample_input(x)
    N, C, H, W = x.shape
    return (N, 2 * H, 2 * W, C)


@torch.library.register_fake(add_op_namespace_prefix("upsample2x_quantize_fp8_static_nhwc_bf16"))
def _upsample2x_quantize_fp8_static_nhwc_bf16_fake(x, scale, out):
    check_shape(out, "out", _upsample_shape(x), "out must have shape (N, 2 * H, 2 * W, C)")


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def _output(out, like, shape, dtype, what, name="out"):
    """Allocate a missing output, else check the caller's (dtype, then shape)."""
    if out is None:
        return like.new_empty(shape, dtype=dtype)
    check_tensor(out, name, dtype)
    check_shape(out, name, shape, what)
    return out


def ncdhw_to_blc_bf16(x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out[b, (t*H + h)*W + w, c] = x[b, c, t, h, w]``: NCDHW -> tokens (B, T*H*W, C)."""
    check_tensor(x, "x", _BF16)
    _check_5d(x, "x")
    B, C, T, H, W = x.shape
    out = _output(out, x, (B, T * H * W, C), _BF16, "out must have shape (B, T * H * W, C)")
    check_same_device([("x", x), ("out", out)])
    if launch_directly(x):
        _ncdhw_to_blc(x, out)
    else:
        _ncdhw_to_blc_bf16_op(x, out)
    return out


def patch_im2col_bf16(x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(NV, 224, 224, 3) NHWC views -> (NV*256, 588) rows of 14x14x3 patches (16x16 grid):
    ``out[v*256 + ph*16 + pw, (py*14 + px)*3 + ch] = x[v, ph*14 + py, pw*14 + px, ch]``."""
    check_tensor(x, "x", _BF16)
    _check_patch_input(x)
    out = _output(out, x, (x.shape[0] * GRID * GRID, FEAT), _BF16,
                  "out must have shape (NV * 256, 588)")
    check_same_device([("x", x), ("out", out)])
    if launch_directly(x):
        _patch_im2col(x, out)
    else:
        _patch_im2col_bf16_op(x, out)
    return out


def time_unshuffle2_bf16(x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, 2C, T, H, W) -> (B, C, 2T, H, W): ``out[b, c, 2t + g] = x[b, g*C + c, t]``."""
    check_tensor(x, "x", _BF16)
    shape = _check_unshuffle(x)
    out = _output(out, x, shape, _BF16, "out must have shape (B, C / 2, 2 * T, H, W)")
    check_same_device([("x", x), ("out", out)])
    if launch_directly(x):
        _time_unshuffle2(x, out)
    else:
        _time_unshuffle2_bf16_op(x, out)
    return out


def add_bias_ncdhw_bf16(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """In place: ``x[b, c] <- bf16(x[b, c] + bias[c])`` (fp32 add); returns ``x``."""
    check_tensor(x, "x", _BF16)
    check_tensor(bias, "bias", _BF16)
    _check_5d(x, "x")
    check_shape(bias, "bias", (x.shape[1],), "bias must have shape (C,)")
    check_same_device([("x", x), ("bias", bias)])
    if launch_directly(x):
        _add_bias_ncdhw(x, bias)
    else:
        _add_bias_ncdhw_bf16_op(x, bias)
    return x


def update_cache2_ncdhw_bf16(cur: torch.Tensor, prev: torch.Tensor,
                             out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Two-frame cache for causal 3-D convs, (B, C, 2, H, W): the last two frames of
    ``cur`` when T >= 2, else ``(prev[:, :, 1], cur[:, :, 0])``. ``out`` may be ``prev``."""
    check_tensor(cur, "cur", _BF16)
    check_tensor(prev, "prev", _BF16)
    shape = _cache2_shape(cur, prev)
    out = _output(out, cur, shape, _BF16, "out must have shape (B, C, 2, H, W)")
    check_same_device([("cur", cur), ("prev", prev), ("out", out)])
    if launch_directly(cur):
        _update_cache2(cur, prev, out)
    else:
        _update_cache2_ncdhw_bf16_op(cur, prev, out)
    return out


def channel_to_space3d_bf16(x: torch.Tensor, out_channels: int, temporal_factor: int,
                            spatial_factor: int, repeats: int = 1, first_chunk: bool = False,
                            out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Depth/pixel shuffle with channel repeat: (B, Cin, T, H, W) ->
    (B, Co, T*tf - (tf-1 if first_chunk else 0), H*sf, W*sf), index map of spec §6.2."""
    check_tensor(x, "x", _BF16)
    _check_5d(x, "x")
    shape = _c2s_out_shape(x, out_channels, temporal_factor, spatial_factor, repeats,
                           first_chunk)
    out = _output(out, x, shape, _BF16,
                  f"channel_to_space3d_bf16 shape contract failed: out must have shape {shape}")
    check_same_device([("x", x), ("out", out)])
    if launch_directly(x):
        _channel_to_space3d(x, out, out_channels, temporal_factor, spatial_factor, repeats,
                            first_chunk)
    else:
        _channel_to_space3d_bf16_op(x, out_channels, temporal_factor, spatial_factor, repeats,
                                    first_chunk, out)
    return out


def pack_causal_cache3_nhwc_bf16(previous: torch.Tensor, current: torch.Tensor,
                                 out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``cat(previous[:, :, 0], previous[:, :, 1], current[:, :, 0]; dim=C)`` as NHWC
    (B, H, W, 3C): the input of a k_t = 3 causal conv run as an NHWC GEMM."""
    check_tensor(previous, "previous", _BF16)
    check_tensor(current, "current", _BF16)
    shape = _pack_shape(previous, current)
    out = _output(out, current, shape, _BF16,
                  "causal cache pack shape contract failed: out must have shape (B, H, W, 3 * C)")
    check_same_device([("previous", previous), ("current", current), ("out", out)])
    if launch_directly(previous):
        _pack_causal_cache3(previous, current, out)
    else:
        _pack_causal_cache3_nhwc_bf16_op(previous, current, out)
    return out


def avg_pool3d_channels_bf16(x: torch.Tensor, out_channels: int, factor_t: int, factor_s: int,
                             group_size: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Front-pad T to a multiple of factor_t with zero frames, space/time-to-depth
    (C*ft*fs^2 channels), then average consecutive groups of ``group_size`` channels
    (fp32, summed in order, divided by group_size): (B, Co, ceil(T/ft), H/fs, W/fs)."""
    check_tensor(x, "x", _BF16)
    _check_5d(x, "x")
    shape = _pool_out_shape(x, out_channels, factor_t, factor_s, group_size)
    out = _output(out, x, shape, _BF16, f"out has the wrong pooled NCDHW shape: expected {shape}")
    check_same_device([("x", x), ("out", out)])
    if launch_directly(x):
        _avg_pool3d_channels(x, out, out_channels, factor_t, factor_s, group_size)
    else:
        _avg_pool3d_channels_bf16_op(x, out_channels, factor_t, factor_s, group_size, out)
    return out


def ndhwc_to_ncdhw_bf16(x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out[b, c, t, h, w] = x[b, t, h, w, c]``."""
    check_tensor(x, "x", _BF16)
    shape = _ncdhw_of(x)
    out = _output(out, x, shape, _BF16, "out must have shape (B, C, T, H, W)")
    check_same_device([("x", x), ("out", out)])
    if launch_directly(x):
        _ndhwc_to_ncdhw(x, out)
    else:
        _ndhwc_to_ncdhw_bf16_op(x, out)
    return out


def ndhwc_to_ncdhw_bias_bf16(x: torch.Tensor, bias: torch.Tensor,
                             out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out[b, c, t, h, w] = bf16(x[b, t, h, w, c] + bias[c])`` (fp32 add)."""
    check_tensor(x, "x", _BF16)
    check_tensor(bias, "bias", _BF16)
    shape = _ncdhw_of(x)
    check_shape(bias, "bias", (shape[1],), "bias must have shape (C,)")
    out = _output(out, x, shape, _BF16, "out must have shape (B, C, T, H, W)")
    check_same_device([("x", x), ("bias", bias), ("out", out)])
    if launch_directly(x):
        _ndhwc_to_ncdhw(x, out, bias=bias)
    else:
        _ndhwc_to_ncdhw_bias_bf16_op(x, bias, out)
    return out


def ndhwc_to_ncdhw_add_bf16(x: torch.Tensor, residual: torch.Tensor,
                            out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out[b, c, t, h, w] = bf16(x[b, t, h, w, c] + residual[b, c, t, h, w])`` (fp32 add).
    ``out`` defaults to ``empty_like(residual)``; it may be ``residual`` itself."""
    check_tensor(x, "x", _BF16)
    check_tensor(residual, "residual", _BF16)
    shape = _ncdhw_of(x)
    check_shape(residual, "residual", shape, "residual must have shape (B, C, T, H, W)")
    if out is None:
        out = torch.empty_like(residual)
    out = _output(out, x, shape, _BF16, "out must have shape (B, C, T, H, W)")
    check_same_device([("x", x), ("residual", residual), ("out", out)])
    if launch_directly(x):
        _ndhwc_to_ncdhw(x, out, residual=residual)
    else:
        _ndhwc_to_ncdhw_add_bf16_op(x, residual, out)
    return out


def ncdhw_quantize_fp8_static_ndhwc_bf16(x: torch.Tensor, scale: float,
                                         out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """NCDHW bf16 -> NDHWC fp8 e4m3fn: ``out[b,t,h,w,c] = fp8(clamp(x[b,c,t,h,w] *
    fp32(1/scale), -448, 448))`` (RNE). ``scale``: a Python float > 0."""
    check_tensor(x, "x", _BF16)
    _check_scale(scale)
    shape = _ndhwc_of(x)
    out = _output(out, x, shape, _FP8, "out must have shape (B, T, H, W, C)")
    check_same_device([("x", x), ("out", out)])
    if launch_directly(x):
        _ncdhw_quantize_ndhwc(x, scale, out)
    else:
        _ncdhw_quantize_fp8_static_ndhwc_bf16_op(x, float(scale), out)
    return out


def upsample2x_quantize_fp8_static_nhwc_bf16(x: torch.Tensor, scale: float,
                                             out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(N, C, H, W) bf16 -> nearest 2x upsample -> (N, 2H, 2W, C) fp8 e4m3fn:
    ``out[n, oh, ow, c] = fp8(clamp(x[n, c, oh//2, ow//2] * fp32(1/scale), -448, 448))``."""
    check_tensor(x, "x", _BF16)
    _check_scale(scale)
    shape = _upsample_shape(x)
    out = _output(out, x, shape, _FP8, "out must have shape (N, 2 * H, 2 * W, C)")
    check_same_device([("x", x), ("out", out)])
    if launch_directly(x):
        _upsample2x_quantize(x, scale, out)
    else:
        _upsample2x_quantize_fp8_static_nhwc_bf16_op(x, float(scale), out)
    return out
