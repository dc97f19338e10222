"""Residual add + RMSNorm / LayerNorm + static FP8 quantization, one launch per call.

Five public functions (spec: postprocess-norms.md §3):

* ``rms_norm_bf16``                                 bf16(x·r·w)
* ``rms_norm_quant_fp8_static_bf16``                fp8(clamp(x·r·w / scale, ±448))
* ``residual_add_rms_norm_bf16``                    residual ← bf16(residual + x); bf16 out
* ``residual_add_rms_norm_quant_fp8_static_bf16``   same, FP8 out
* ``layer_norm_bf16``                               two-pass fp32 LayerNorm, bf16 out

``r = rsqrt(Σx²/D + eps)``, the hardware's approximate rsqrt (≤ 2 fp32 ulp; it shortens
the serial load -> reduce -> store chain of a row: measured 0.4-1.7% faster on H200
than a correctly rounded 1/sqrt). The residual variants take the RMS of the *unrounded* fp32 sum ``a = residual + x`` but normalize the *rounded* residual
``bf16(a)`` that they store back in place (spec §3.2, §7.3).

Kernels work on row tiles; ``row_config`` picks the launch shape from the width and
the row-count class (benchmarks/tune_norms.py measured it). A row of up to
``REG_MAX_BLOCK`` elements stays in registers, one read of every input (LayerNorm, and
FP8 add + RMSNorm on many 8192-wide rows, load the weight (and bias) after the
reduction where registers bound the rows per SM);
wider rows are processed in chunks over two passes (sum of squares, then normalize and
store; three for LayerNorm), the later passes re-reading the row from L2, as are many
4096-wide LayerNorm rows (two unrolled chunks, measured faster there). A persistent
variant loops each program over many rows, loading the next row while the current one
is reduced. fp-fusion is off: every product is rounded before the following add, as in
the eager PyTorch reference.
"""

from typing import Optional

import torch
import triton
import triton.language as tl

from ._helpers import enter_dependent_launch, load_row_vector, quantize_fp8_e4m3, row_tile
from ._host import (RowConfig, cdiv, check_same_device, check_shape, check_tensor,
                    dependent_launch, device_guard, few_rows, launch_directly,
                    next_power_of_2, row_grid, sm_count)
from ._host import FEW_ROWS_PER_SM  # noqa: F401  (the row rule's boundary, for callers)
from ._ops import add_op_namespace_prefix

_BF16 = torch.bfloat16
_FP32 = torch.float32
_FP8 = torch.float8_e4m3fn


# ----------------------------------------------------------------------------
# Launch configuration
# ----------------------------------------------------------------------------


REG_MAX_BLOCK = 8192  # widest row kept in registers
CHUNK = 4096  # chunk of a wider row, 8 warps
LN_CHUNK = 2048  # LayerNorm chunk of many 4096-wide rows (8 warps, two unrolled)
LN_LATE_AFFINE_BLOCK = 8192  # this wide, LayerNorm loads weight/bias late even in one wave
PERSISTENT_WARPS_PER_SM = 32


def row_config(D: int, n_rows: int, device, *, quant: bool = False, residual: bool = False,
               layer_norm: bool = False) -> RowConfig:
    """The launch rule, from benchmarks/tune_norms.py on H200. Keyed on the width and on
    the row count class only (few rows vs many: two compiled variants per width at most).

    * few rows (one wave): one row per program, 8 elements per thread (LayerNorm, with
      its two reductions: 16): many threads on each row's serial load -> reduce -> store
      chain;
    * many rows: at most 8 warps per row, 16 elements per thread (32 for 8192-wide rows):
      two or more 16-byte loads in flight per thread, more rows per SM;
      static FP8 without residual: a persistent grid (32 warps per SM) that loads the
      next row during the current one's reduction and the weight once per program;
      LayerNorm 4096 wide: two unrolled ``LN_CHUNK`` chunks, three passes (the second
      and third from L2, ``_layer_norm_chunked_row``), measured faster than the
      register row there (72.7 vs 75.5 us at 16384x4096), slower at 8192 (74.0 vs 69.4).
    * rows wider than ``REG_MAX_BLOCK``: a loop over ``CHUNK``-wide chunks.
    """
    block_d = next_power_of_2(D)
    if block_d > REG_MAX_BLOCK:
        return RowConfig(True, 1, CHUNK, 8)
    if few_rows(n_rows, device):
        per_thread = 16 if layer_norm else 8
        return RowConfig(False, 1, block_d, max(1, min(16, block_d // (32 * per_thread))))
    if layer_norm and block_d == 4096:
        return RowConfig(True, 1, LN_CHUNK, 8)
    if quant and not residual:
        num_warps = max(1, min(16, block_d // 512))
        return RowConfig(False, 1, block_d, num_warps,
                         max(1, PERSISTENT_WARPS_PER_SM // num_warps))
    return RowConfig(False, 1, block_d, max(1, min(8, block_d // 512)))



def layer_norm_late_affine(cfg: RowConfig, n_rows: int, device) -> bool:
    """Whether a LayerNorm register row loads its weight and bias after the statistics
    (not live across the two reductions: 8192 wide at 8 warps 64 instead of 80 registers a
    thread, 4096 wide 32 instead of 48, more rows per SM) or beside x. Late for many rows
    and for 8192-wide rows (H200: 8192x8192 69.4 vs 77.1 us, 1024x8192 13.4 vs 14.2);
    a wave of few narrower rows keeps the loads off its serial chain (512x1152 at 8 warps
    3.07 vs 3.16 us)."""
    return not few_rows(n_rows, device) or cfg.block_d >= LN_LATE_AFFINE_BLOCK


def rms_late_weight(cfg: RowConfig, n_rows: int, device, *, quant: bool,
                    residual: bool) -> bool:
    """Whether an RMSNorm register row (one program per tile) loads its weight after the
    reduction instead of beside x: not live across it. Late for many 8192-wide rows of
    FP8 add + RMSNorm only (H200: 8192x8192 116.1 vs 118.9 us, 73 instead of 102
    registers a thread, 3 rows per SM instead of 2); elsewhere it measured slower or
    even (add + RMSNorm 8192x8192 134.5 vs 134.0, 16384x4096 130.7 vs 131.1; FP8 add +
    RMSNorm 16384x4096 115.7 vs 113.4; RMSNorm 8192x8192 74.8 vs 74.1)."""
    return (quant and residual and not cfg.chunked and not cfg.persistent
            and cfg.block_d >= REG_MAX_BLOCK and not few_rows(n_rows, device))


def layer_norm_unrolled_chunks(cfg: RowConfig, D: int) -> int:
    """Chunks of a chunked LayerNorm row to unroll (0: loop over them). A row that would
    fit the register block is unrolled, every chunk's load in flight at once, with L2
    eviction hints; a wider one loops (unrolled, 8 chunks of 2048 take 128 registers a
    thread, 32 spill)."""
    if next_power_of_2(D) > REG_MAX_BLOCK:
        return 0
    return cdiv(D, cfg.block_d)


# ----------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------


@triton.jit
def _store_out(p_out, v, m, inv_scale, QUANT: tl.constexpr):
    if QUANT:
        tl.store(p_out, quantize_fp8_e4m3(v, inv_scale), mask=m)
    else:
        tl.store(p_out, v.to(tl.bfloat16), mask=m)


@triton.jit
def _load_rms_tile(x_ptr, res_ptr, i_t, n_rows, D, HAS_RES: tl.constexpr,
                   BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """The tile's x (and residual) as loaded, bf16."""
    _, o, m = row_tile(i_t, n_rows, D, BLOCK_R, BLOCK_D)
    b_x = tl.load(x_ptr + o, mask=m, other=0.0)
    b_res = b_x
    if HAS_RES:
        b_res = tl.load(res_ptr + o, mask=m, other=0.0)
    return b_x, b_res



@triton.jit
def _finish_rms_tile(b_x, b_res, b_w, w_ptr, i_t, res_ptr, out_ptr, n_rows, D, eps, inv_scale,
                     HAS_RES: tl.constexpr, QUANT: tl.constexpr, LATE_W: tl.constexpr,
                     BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """Residual store, RMS, out. LATE_W: the weight is loaded here, after the reduction
    (b_w unused), so that it is not live across it."""
    _, o, m = row_tile(i_t, n_rows, D, BLOCK_R, BLOCK_D)
    b_x = b_x.to(tl.float32)
    if HAS_RES:
        b_a = b_res.to(tl.float32) + b_x
        b_rounded = b_a.to(tl.bfloat16)
        tl.store(res_ptr + o, b_rounded, mask=m)
        r = tl.math.rsqrt(tl.sum(b_a * b_a, 1) / D + eps)[:, None]  # unrounded sum
        b_n = b_rounded.to(tl.float32)  # rounded residual
    else:
        r = tl.math.rsqrt(tl.sum(b_x * b_x, 1) / D + eps)[:, None]
        b_n = b_x
    if LATE_W:
        b_w = load_row_vector(w_ptr, D, BLOCK_D)
    _store_out(out_ptr + o, b_n * r * b_w, m, inv_scale, QUANT)


@triton.jit
def _rms_norm_chunked_row(x_ptr, res_ptr, w_ptr, out_ptr, i_row, D, eps, inv_scale,
                          HAS_RES: tl.constexpr, QUANT: tl.constexpr, BLOCK_D: tl.constexpr):
    """One wide row: the sum of squares over chunks, then normalize chunk by chunk
    (re-reading the row, which pass one left in L2)."""
    o_row = i_row.to(tl.int64) * D
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for c in range(0, tl.cdiv(D, BLOCK_D)):
        o_d = c * BLOCK_D + tl.arange(0, BLOCK_D)
        m = o_d < D
        b_x = tl.load(x_ptr + o_row + o_d, mask=m, other=0.0).to(tl.float32)
        if HAS_RES:
            b_a = tl.load(res_ptr + o_row + o_d, mask=m, other=0.0).to(tl.float32) + b_x
            tl.store(res_ptr + o_row + o_d, b_a.to(tl.bfloat16), mask=m)
            acc += b_a * b_a
        else:
            acc += b_x * b_x
    r = tl.math.rsqrt(tl.sum(acc, 0) / D + eps)
    tl.debug_barrier()  # pass 2 re-reads the residual pass 1 stored
    src = res_ptr if HAS_RES else x_ptr
    for c in range(0, tl.cdiv(D, BLOCK_D)):
        o_d = c * BLOCK_D + tl.arange(0, BLOCK_D)
        m = o_d < D
        b_x = tl.load(src + o_row + o_d, mask=m, other=0.0).to(tl.float32)
        b_w = tl.load(w_ptr + o_d, mask=m, other=0.0).to(tl.float32)
        _store_out(out_ptr + o_row + o_d, b_x * r * b_w, m, inv_scale, QUANT)


@triton.jit(do_not_specialize=["n_rows"])
def _rms_norm_kernel(
    x_ptr, res_ptr, w_ptr, scale_ptr, out_ptr,
    n_rows, D, eps,
    HAS_RES: tl.constexpr, QUANT: tl.constexpr, CHUNKED: tl.constexpr,
    PERSISTENT: tl.constexpr, LATE_W: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr, PDL: tl.constexpr = False,
):
    """One tile of BLOCK_R rows per program, a persistent loop over tiles (the weight
    loaded once per program, LATE_W unused), or one wide row in BLOCK_D chunks
    (CHUNKED)."""
    enter_dependent_launch(PDL)
    inv_scale = 1.0
    if QUANT:
        inv_scale = tl.math.div_rn(1.0, tl.load(scale_ptr).to(tl.float32))
    i_t = tl.program_id(0)
    if CHUNKED:
        _rms_norm_chunked_row(x_ptr, res_ptr, w_ptr, out_ptr, i_t, D, eps, inv_scale,
                              HAS_RES, QUANT, BLOCK_D)
    elif PERSISTENT:
        b_x, b_res = _load_rms_tile(x_ptr, res_ptr, i_t, n_rows, D, HAS_RES, BLOCK_R, BLOCK_D)
        b_w = load_row_vector(w_ptr, D, BLOCK_D)
        step = tl.num_programs(0)
        for _ in range(i_t, tl.cdiv(n_rows, BLOCK_R), step):
            # the next tile's loads are in flight while this one is reduced and stored
            b_x_next, b_res_next = _load_rms_tile(x_ptr, res_ptr, i_t + step, n_rows, D,
                                                  HAS_RES, BLOCK_R, BLOCK_D)
            _finish_rms_tile(b_x, b_res, b_w, w_ptr, i_t, res_ptr, out_ptr, n_rows, D, eps,
                             inv_scale, HAS_RES, QUANT, False, BLOCK_R, BLOCK_D)
            b_x, b_res, i_t = b_x_next, b_res_next, i_t + step
    else:
        b_x, b_res = _load_rms_tile(x_ptr, res_ptr, i_t, n_rows, D, HAS_RES, BLOCK_R, BLOCK_D)
        b_w = b_x  # placeholder: LATE_W loads the weight after the reduction
        if not LATE_W:
            b_w = load_row_vector(w_ptr, D, BLOCK_D)
        _finish_rms_tile(b_x, b_res, b_w, w_ptr, i_t, res_ptr, out_ptr, n_rows, D, eps,
                         inv_scale, HAS_RES, QUANT, LATE_W, BLOCK_R, BLOCK_D)


@triton.jit
def _load_affine(w_ptr, b_ptr, D, BLOCK_D: tl.constexpr):
    """LayerNorm weight and bias as fp32 [1, BLOCK_D] (zero past D)."""
    return load_row_vector(w_ptr, D, BLOCK_D), load_row_vector(b_ptr, D, BLOCK_D)


@triton.jit
def _finish_layer_norm_tile(b_x, b_w, b_b, w_ptr, b_ptr, i_t, out_ptr, n_rows, D, eps,
                            LATE_AFFINE: tl.constexpr, BLOCK_R: tl.constexpr,
                            BLOCK_D: tl.constexpr):
    """Mean, biased variance of x - mean, normalize. LATE_AFFINE: the weight and bias
    are loaded here, after both reductions, instead of being passed in (b_w, b_b
    unused): they are not live across the reductions, which takes an 8192-wide row at
    8 warps from 80 to 64 registers a thread (4096 wide: 48 to 32), more rows per SM."""
    _, o, m = row_tile(i_t, n_rows, D, BLOCK_R, BLOCK_D)
    b_x = b_x.to(tl.float32)
    mean = (tl.sum(b_x, 1) / D)[:, None]
    b_c = tl.where(m, b_x - mean, 0.0)
    rstd = tl.math.rsqrt(tl.sum(b_c * b_c, 1) / D + eps)[:, None]
    if LATE_AFFINE:
        b_w, b_b = _load_affine(w_ptr, b_ptr, D, BLOCK_D)
    tl.store(out_ptr + o, (b_c * rstd * b_w + b_b).to(tl.bfloat16), mask=m)


@triton.jit
def _load_ln_chunk(x_ptr, o_row, c, D, POLICY: tl.constexpr, BLOCK_D: tl.constexpr):
    o_d = c * BLOCK_D + tl.arange(0, BLOCK_D)
    m = o_d < D
    b_x = tl.load(x_ptr + o_row + o_d, mask=m, other=0.0, eviction_policy=POLICY)
    return b_x.to(tl.float32), o_d, m


@triton.jit
def _sum_ln_chunk(acc, x_ptr, o_row, c, D, mean, CENTERED: tl.constexpr, POLICY: tl.constexpr,
                  BLOCK_D: tl.constexpr):
    """acc + the chunk (CENTERED: + its squared deviations from the mean)."""
    b_x, _, m = _load_ln_chunk(x_ptr, o_row, c, D, POLICY, BLOCK_D)
    if CENTERED:
        b_c = tl.where(m, b_x - mean, 0.0)
        return acc + b_c * b_c
    return acc + b_x


@triton.jit
def _store_ln_chunk(x_ptr, w_ptr, b_ptr, out_ptr, o_row, c, D, mean, rstd,
                    POLICY: tl.constexpr, AFFINE_POLICY: tl.constexpr, BLOCK_D: tl.constexpr):
    b_x, o_d, m = _load_ln_chunk(x_ptr, o_row, c, D, POLICY, BLOCK_D)
    b_w = tl.load(w_ptr + o_d, mask=m, other=0.0, eviction_policy=AFFINE_POLICY)
    b_b = tl.load(b_ptr + o_d, mask=m, other=0.0, eviction_policy=AFFINE_POLICY)
    y = (b_x - mean) * rstd * b_w.to(tl.float32) + b_b.to(tl.float32)
    tl.store(out_ptr + o_row + o_d, y.to(tl.bfloat16), mask=m)


@triton.jit
def _layer_norm_chunked_row(x_ptr, w_ptr, b_ptr, out_ptr, i_row, D, eps,
                            N_CHUNKS: tl.constexpr, BLOCK_D: tl.constexpr):
    """One row in chunks: mean, variance of x - mean, then normalize (three reads, the
    later two from L2). N_CHUNKS > 0: that many chunks unrolled (all loads of a pass in
    flight), the first two reads kept in L2 (evict_last), the last streamed
    (evict_first), as torch.compile's looped reductions do; 0: a loop over the chunks."""
    o_row = i_row.to(tl.int64) * D
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    if N_CHUNKS > 0:
        for c in tl.static_range(N_CHUNKS):
            acc = _sum_ln_chunk(acc, x_ptr, o_row, c, D, 0.0, False, "evict_last", BLOCK_D)
    else:
        for c in range(0, tl.cdiv(D, BLOCK_D)):
            acc = _sum_ln_chunk(acc, x_ptr, o_row, c, D, 0.0, False, "", BLOCK_D)
    mean = tl.sum(acc, 0) / D
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    if N_CHUNKS > 0:
        for c in tl.static_range(N_CHUNKS):
            acc = _sum_ln_chunk(acc, x_ptr, o_row, c, D, mean, True, "evict_last", BLOCK_D)
    else:
        for c in range(0, tl.cdiv(D, BLOCK_D)):
            acc = _sum_ln_chunk(acc, x_ptr, o_row, c, D, mean, True, "", BLOCK_D)
    rstd = tl.math.rsqrt(tl.sum(acc, 0) / D + eps)
    if N_CHUNKS > 0:
        for c in tl.static_range(N_CHUNKS):
            _store_ln_chunk(x_ptr, w_ptr, b_ptr, out_ptr, o_row, c, D, mean, rstd,
                            "evict_first", "evict_last", BLOCK_D)
    else:
        for c in range(0, tl.cdiv(D, BLOCK_D)):
            _store_ln_chunk(x_ptr, w_ptr, b_ptr, out_ptr, o_row, c, D, mean, rstd, "", "",
                            BLOCK_D)


@triton.jit(do_not_specialize=["n_rows"])
def _layer_norm_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr, n_rows, D, eps,
    CHUNKED: tl.constexpr, PERSISTENT: tl.constexpr, LATE_AFFINE: tl.constexpr,
    N_CHUNKS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """Two-pass fp32 LayerNorm: mean, then the biased variance of x - mean. The
    persistent loop loads the weight and bias once per program (LATE_AFFINE unused);
    N_CHUNKS: see _layer_norm_chunked_row."""
    enter_dependent_launch(PDL)
    i_t = tl.program_id(0)
    if CHUNKED:
        _layer_norm_chunked_row(x_ptr, w_ptr, b_ptr, out_ptr, i_t, D, eps, N_CHUNKS, BLOCK_D)
    else:
        b_x, _ = _load_rms_tile(x_ptr, x_ptr, i_t, n_rows, D, False, BLOCK_R, BLOCK_D)
        if PERSISTENT:
            b_w, b_b = _load_affine(w_ptr, b_ptr, D, BLOCK_D)
            step = tl.num_programs(0)
            for _ in range(i_t, tl.cdiv(n_rows, BLOCK_R), step):
                b_x_next, _ = _load_rms_tile(x_ptr, x_ptr, i_t + step, n_rows, D, False,
                                             BLOCK_R, BLOCK_D)
                _finish_layer_norm_tile(b_x, b_w, b_b, w_ptr, b_ptr, i_t, out_ptr, n_rows, D,
                                        eps, False, BLOCK_R, BLOCK_D)
                b_x, i_t = b_x_next, i_t + step
        elif LATE_AFFINE:
            _finish_layer_norm_tile(b_x, b_x, b_x, w_ptr, b_ptr, i_t, out_ptr, n_rows, D, eps,
                                    True, BLOCK_R, BLOCK_D)
        else:
            b_w, b_b = _load_affine(w_ptr, b_ptr, D, BLOCK_D)
            _finish_layer_norm_tile(b_x, b_w, b_b, w_ptr, b_ptr, i_t, out_ptr, n_rows, D, eps,
                                    False, BLOCK_R, BLOCK_D)


def _launch_rms(x, residual, weight, scale, out, eps, cfg=None, late_w=None):
    """``cfg`` / ``late_w`` None: the launch rule; else forced (the tune script). Returns
    the launched kernel."""
    n_rows, D = x.shape
    cfg = cfg or row_config(D, n_rows, x.device, quant=scale is not None,
                            residual=residual is not None)
    if late_w is None:
        late_w = rms_late_weight(cfg, n_rows, x.device, quant=scale is not None,
                                 residual=residual is not None)
    with device_guard(x):
        return _rms_norm_kernel[(row_grid(cfg, n_rows, x.device),)](
            x, residual, weight, scale, out, n_rows, D, eps,
            HAS_RES=residual is not None, QUANT=scale is not None, CHUNKED=cfg.chunked,
            PERSISTENT=cfg.persistent > 0, LATE_W=late_w, BLOCK_R=cfg.block_r,
            BLOCK_D=cfg.block_d, num_warps=cfg.num_warps, enable_fp_fusion=False,
            **dependent_launch(x.device),
        )


def _launch_layer_norm(x, weight, bias, out, eps, cfg=None, late_affine=None):
    """``late_affine`` None: ``layer_norm_late_affine``; a bool forces the placement.
    Returns the launched kernel."""
    n_rows, D = x.shape
    cfg = cfg or row_config(D, n_rows, x.device, layer_norm=True)
    if late_affine is None:
        late_affine = layer_norm_late_affine(cfg, n_rows, x.device)
    n_chunks = layer_norm_unrolled_chunks(cfg, D) if cfg.chunked else 0
    with device_guard(x):
        return _layer_norm_kernel[(row_grid(cfg, n_rows, x.device),)](
            x, weight, bias, out, n_rows, D, eps, CHUNKED=cfg.chunked,
            PERSISTENT=cfg.persistent > 0, LATE_AFFINE=late_affine, N_CHUNKS=n_chunks,
            BLOCK_R=cfg.block_r, BLOCK_D=cfg.block_d, num_warps=cfg.num_warps,
            enable_fp_fusion=False, **dependent_launch(x.device),
        )


# ----------------------------------------------------------------------------
# Shape checks shared by the wrappers and the fakes
# ----------------------------------------------------------------------------


def _check_matrix(t, name):
    if t.dim() != 2:
        raise RuntimeError(f"{name} must be a 2D tensor (rank-2), got {t.dim()} dims")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise RuntimeError(f"{name} dimensions must be non-zero, got {tuple(t.shape)}")
    if t.shape[1] % 2 != 0:
        raise RuntimeError(f"{name}.shape[1] must be even for packed BF16 path, got {t.shape[1]}")


def _check_shapes(x, weight, out=None, *, residual=None, scale=None, bias=None):
    _check_matrix(x, "x")
    D = x.shape[1]
    if residual is not None:
        check_shape(residual, "residual", x.shape, "residual and x must have the same shape")
    if bias is not None:
        what = "weight and bias must have shape (x.shape[1],)"
        check_shape(weight, "weight", (D,), what)
        check_shape(bias, "bias", (D,), what)
    else:
        check_shape(weight, "weight", (D,), "weight must have shape (x.shape[1],)")
    if scale is not None and scale.numel() != 1:
        raise RuntimeError(f"scale must contain exactly one value, got {scale.numel()}")
    if out is not None:
        check_shape(out, "out", x.shape, "out must have the same shape as x")


# ----------------------------------------------------------------------------
# Ops (out-variant, void) + fakes for torch.compile
# ----------------------------------------------------------------------------


@torch.library.custom_op(add_op_namespace_prefix("rms_norm_bf16"), mutates_args=("out",))
def _rms_norm_bf16_op(x: torch.Tensor, weight: torch.Tensor, eps: float,
                      out: torch.Tensor) -> None:
    _launch_rms(x, None, weight, None, out, eps)


@torch.library.register_fake(add_op_namespace_prefix("rms_norm_bf16"))
def _rms_norm_bf16_fake(x, weight, eps, out):
    _check_shapes(x, weight, out)


@torch.library.custom_op(add_op_namespace_prefix("layer_norm_bf16"), mutates_args=("out",))
def _layer_norm_bf16_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                        out: torch.Tensor) -> None:
    _launch_layer_norm(x, weight, bias, out, eps)


@torch.library.register_fake(add_op_namespace_prefix("layer_norm_bf16"))
def _layer_norm_bf16_fake(x, weight, bias, eps, out):
    _check_shapes(x, weight, out, bias=bias)


@torch.library.custom_op(add_op_namespace_prefix("rms_norm_quant_fp8_static_bf16"),
                         mutates_args=("out",))
def _rms_norm_quant_op(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, eps: float,
                       out: torch.Tensor) -> None:
    _launch_rms(x, None, weight, scale, out, eps)


@torch.library.register_fake(add_op_namespace_prefix("rms_norm_quant_fp8_static_bf16"))
def _rms_norm_quant_fake(x, weight, scale, eps, out):
    _check_shapes(x, weight, out, scale=scale)


@torch.library.custom_op(add_op_namespace_prefix("residual_add_rms_norm_quant_fp8_static_bf16"),
                         mutates_args=("residual", "out"))
def _residual_add_rms_norm_quant_op(residual: torch.Tensor, x: torch.Tensor,
                                    weight: torch.Tensor, scale: torch.Tensor, eps: float,
                                    out: torch.Tensor) -> None:
    _launch_rms(x, residual, weight, scale, out, eps)


@torch.library.register_fake(
    add_op_namespace_prefix("residual_add_rms_norm_quant_fp8_static_bf16"))
def _residual_add_rms_norm_quant_fake(residual, x, weight, scale, eps, out):
    _check_shapes(x, weight, out, residual=residual, scale=scale)


@torch.library.custom_op(add_op_namespace_prefix("residual_add_rms_norm_bf16"),
                         mutates_args=("residual", "out"))
def _residual_add_rms_norm_op(residual: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                              eps: float, out: torch.Tensor) -> None:
    _launch_rms(x, residual, weight, None, out, eps)


@torch.library.register_fake(add_op_namespace_prefix("residual_add_rms_norm_bf16"))
def _residual_add_rms_norm_fake(residual, x, weight, eps, out):
    _check_shapes(x, weight, out, residual=residual)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def _validate(x, weight, *, residual=None, scale=None, bias=None):
    named = [("x", x), ("weight", weight)]
    if residual is not None:
        named.insert(0, ("residual", residual))
    if bias is not None:
        named.append(("bias", bias))
    for name, t in named:
        check_tensor(t, name, _BF16)
    if scale is not None:
        check_tensor(scale, "scale", _FP32)
        named.append(("scale", scale))
    _check_shapes(x, weight, residual=residual, scale=scale, bias=bias)
    return named


def _finish_out(out, x, dtype, named):
    if out is None:
        out = torch.empty(x.shape, dtype=dtype, device=x.device)
    check_tensor(out, "out", dtype)
    check_shape(out, "out", x.shape, "out must have the same shape as x")
    check_same_device(named + [("out", out)])
    return out


def rms_norm_bf16(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6,
                  out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out = bf16(x · rsqrt(mean(x²) + eps) · weight)`` per row; x bf16 (rows, D)."""
    named = _validate(x, weight)
    out = _finish_out(out, x, _BF16, named)
    if launch_directly(x):
        _launch_rms(x, None, weight, None, out, eps)
    else:
        _rms_norm_bf16_op(x, weight, eps, out)
    return out


def layer_norm_bf16(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    eps: float = 1e-5, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out = bf16((x − μ) · rsqrt(var + eps) · weight + bias)`` per row (biased var)."""
    named = _validate(x, weight, bias=bias)
    out = _finish_out(out, x, _BF16, named)
    if launch_directly(x):
        _launch_layer_norm(x, weight, bias, out, eps)
    else:
        _layer_norm_bf16_op(x, weight, bias, eps, out)
    return out


def rms_norm_quant_fp8_static_bf16(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
                                   eps: float = 1e-6,
                                   out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out = fp8_e4m3(clamp(x·r·w · (1/scale), ±448))``; ``scale`` a 1-element fp32 tensor."""
    named = _validate(x, weight, scale=scale)
    out = _finish_out(out, x, _FP8, named)
    if launch_directly(x):
        _launch_rms(x, None, weight, scale, out, eps)
    else:
        _rms_norm_quant_op(x, weight, scale, eps, out)
    return out


def residual_add_rms_norm_quant_fp8_static_bf16(
    residual: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
    eps: float = 1e-6, out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``residual ← bf16(residual + x)`` in place; RMS of the unrounded sum, applied to the
    rounded residual; FP8 out. Returns ``out`` only."""
    named = _validate(x, weight, residual=residual, scale=scale)
    out = _finish_out(out, x, _FP8, named)
    if launch_directly(x):
        _launch_rms(x, residual, weight, scale, out, eps)
    else:
        _residual_add_rms_norm_quant_op(residual, x, weight, scale, eps, out)
    return out


def residual_add_rms_norm_bf16(residual: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                               eps: float = 1e-6,
                               out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``residual ← bf16(residual + x)`` in place; ``out = bf16(bf16(a) · r · w)`` with r from
    the unrounded sum ``a``. Returns ``out`` only."""
    named = _validate(x, weight, residual=residual)
    out = _finish_out(out, x, _BF16, named)
    if launch_directly(x):
        _launch_rms(x, residual, weight, None, out, eps)
    else:
        _residual_add_rms_norm_op(residual, x, weight, eps, out)
    return out
