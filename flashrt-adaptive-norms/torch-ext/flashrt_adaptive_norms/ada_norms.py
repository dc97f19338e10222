"""AdaLN-style RMSNorm with per-token (or broadcast) modulation, one launch per call.

Two public functions (spec: postprocess-norms.md §5):

* ``ada_rms_norm_style_bf16``                 out = bf16(((x·r)·w)·(1 + sc) + sh); gate_out = gate chunk
* ``gate_residual_ada_norm_fp8_static_bf16``  residual ← bf16(residual + x·gate) in place, then the
                                              same norm + modulation of the *rounded* residual, FP8 out

``style`` is (rows, 3·D) or (1, 3·D) (one row broadcast to all, never
materialized), laid out ``[scale | shift | gate]``. Operation order as written,
every product rounded before the following add (fp-fusion off: no FMA), as in
the eager reference and the spec's explicit RN mul/add. ``r`` is the hardware's
approximate rsqrt (≤ 2 fp32 ulp, like the source's rsqrtf): it shortens each row's
serial load -> reduce -> store chain: measured up to 4% faster on H200 than a
correctly rounded 1/sqrt (14% on the 10-row FP8 call).

``row_config`` picks the launch shape from the width, the style layout and the
row-count class (benchmarks/tune_ada_norms.py measured it). Rows of up to
``REG_MAX_BLOCK`` elements stay in registers, every load of a tile issued before its
reduction (many 8192-wide rows, and many 4096-wide rows with a broadcast style (see
``late_style_loads``): the weight, scale and shift after it); wider rows are
done in ``CHUNK``-wide chunks over two passes (sum of squares, then modulate and store;
the fused op re-reads the residual it stored in pass one). A persistent variant loops
each program over many rows, loading the next row while the current one is reduced;
with a broadcast style it loads the style row once per program instead of once per row.
"""

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ._helpers import enter_dependent_launch, load_row_vector, quantize_fp8_e4m3, row_tile
from ._host import (RowConfig, check_rows_even_dim, check_same_device, check_shape,
                    check_tensor, dependent_launch, device_guard, few_rows,
                    launch_directly, next_power_of_2, row_grid, sm_count)
from ._host import FEW_ROWS_PER_SM  # noqa: F401  (the row rule's boundary, for callers)
from ._ops import add_op_namespace_prefix

_BF16 = torch.bfloat16
_FP32 = torch.float32
_FP8 = torch.float8_e4m3fn


REG_MAX_BLOCK = 8192  # widest row kept in registers
CHUNK = 4096  # chunk of a wider row, 8 warps
LATE_STYLE_BLOCK = 8192  # many rows this wide load weight/scale/shift after the reduction
LATE_BROADCAST_BLOCK = 4096  # ... and from this wide with a broadcast style: the norm
LATE_FUSED_ROWS = 16384  # ... and the fused op from this many rows
PERSISTENT_PROGRAMS_PER_SM = 2


def row_config(D: int, n_rows: int, device, broadcast: bool, fused: bool = False) -> RowConfig:
    """The launch rule, from benchmarks/tune_ada_norms.py on H200. Keyed on the width,
    the style layout, the function and the row count class (few rows, many, and for the
    fused op with a broadcast style from ``LATE_FUSED_ROWS``).

    * few rows (one wave): one row per program, 8 elements per thread: the most threads
      on each row's serial load -> reduce -> store chain;
    * many rows, broadcast style: a persistent grid that keeps the style row (and the
      weight) in registers for all its rows and loads the next row during the current
      one's reduction, 16 elements per thread;
    * many rows, per-row style: 32 elements per thread (x and three style chunks: many
      16-byte loads in flight per thread);
    * many 8192-wide rows, either style, and many 4096-wide rows with a broadcast style
      (the norm; the fused op from ``LATE_FUSED_ROWS`` rows): one row per program, 16
      elements per thread, the weight, scale and shift loaded after the reduction
      (``late_style_loads``).
    """
    block_d = next_power_of_2(D)
    if block_d > REG_MAX_BLOCK:
        return RowConfig(True, 1, CHUNK, 8)
    if few_rows(n_rows, device):
        return RowConfig(False, 1, block_d, max(1, min(16, block_d // 256)))
    if _late_rows(block_d, n_rows, device, broadcast, fused):
        return RowConfig(False, 1, block_d, block_d // 512)
    if broadcast:
        return RowConfig(False, 1, block_d, max(1, min(16, block_d // 512)),
                         PERSISTENT_PROGRAMS_PER_SM)
    return RowConfig(False, 1, block_d, max(1, min(16, block_d // 1024)))



def _late_rows(block_d, n_rows, device, broadcast, fused) -> bool:
    """Many register rows (both callers exclude chunked rows) that run one row per
    program with late style loads."""
    if few_rows(n_rows, device):
        return False
    return block_d >= LATE_STYLE_BLOCK or (
        broadcast and block_d >= LATE_BROADCAST_BLOCK and (not fused or n_rows >= LATE_FUSED_ROWS))


def late_style_loads(cfg: RowConfig, n_rows: int, device, broadcast: bool = False,
                     fused: bool = False) -> bool:
    """Whether a register row (one program per tile) loads the weight, scale and shift
    after its reduction instead of beside x (not live across it: fewer registers a
    thread, more rows per SM), copying the gate chunk to gate_out first. Late for many
    rows from ``LATE_STYLE_BLOCK`` wide (H200, 8192x8192 at 16 elements per thread,
    against the rule before: fused per-row style 264.3 vs 294.8 us, 58 instead of 167
    registers a thread; broadcast norm 108.3 vs 113.7 (the persistent grid); per-row
    norm 187.3 vs 187.1; the fused op with a broadcast style measured late at 32
    elements per thread only: 187.6 vs 194.4). With a broadcast style also from
    ``LATE_BROADCAST_BLOCK`` (H200, 2026-12-04, against the persistent grid: the norm
    at 2520 / 4096 / 16384 rows of 3072 / 3072 / 4096, 14.46 / 22.44 / 103.50 vs 14.76 /
    23.84 / 110.95 us; the fused op 181.92 vs 192.85 at 16384 x 4096, but 25.17 / 38.20
    vs 23.15 / 36.35 at the Wan rows, where the persistent grid stays)."""
    return (not cfg.chunked and not cfg.persistent
            and _late_rows(cfg.block_d, n_rows, device, broadcast, fused))


@triton.jit
def _load_style_chunk(style_ptr, i_r, m, D, K: tl.constexpr, BROADCAST: tl.constexpr,
                      BLOCK_D: tl.constexpr):
    """Chunk K (0 scale, 1 shift, 2 gate) of the tile's style, as loaded, bf16: one
    (1, BLOCK_D) row for a broadcast style, else one row per tile row (row stride 3·D)."""
    o_d = tl.arange(0, BLOCK_D)
    if BROADCAST:
        m = (o_d < D)[None, :]
        p_st = style_ptr + o_d[None, :]
    else:
        p_st = style_ptr + i_r[:, None] * (3 * D) + o_d[None, :]
    return tl.load(p_st + K * D, mask=m, other=0.0)


@triton.jit
def _load_style(style_ptr, i_r, m, D, BROADCAST: tl.constexpr, BLOCK_D: tl.constexpr):
    """The tile's [scale | shift | gate] chunks as loaded, bf16."""
    return (_load_style_chunk(style_ptr, i_r, m, D, 0, BROADCAST, BLOCK_D),
            _load_style_chunk(style_ptr, i_r, m, D, 1, BROADCAST, BLOCK_D),
            _load_style_chunk(style_ptr, i_r, m, D, 2, BROADCAST, BLOCK_D))


@triton.jit
def _load_tile(res_ptr, x_ptr, gate_ptr, style_ptr, i_t, n_rows, D, FUSED: tl.constexpr,
               BROADCAST: tl.constexpr, LATE_STYLE: tl.constexpr, BLOCK_R: tl.constexpr,
               BLOCK_D: tl.constexpr):
    """Every input of tile ``i_t``, as loaded (a broadcast style is loaded elsewhere;
    LATE_STYLE: only x, residual and gate)."""
    i_r, o, m = row_tile(i_t, n_rows, D, BLOCK_R, BLOCK_D)
    b_x = tl.load(x_ptr + o, mask=m, other=0.0)
    b_res = b_x
    b_gate = b_x
    if FUSED:
        b_res = tl.load(res_ptr + o, mask=m, other=0.0)
        b_gate = tl.load(gate_ptr + o, mask=m, other=0.0)
    b_sc = b_x
    b_sh = b_x
    b_g = b_x
    if not BROADCAST and not LATE_STYLE:
        b_sc, b_sh, b_g = _load_style(style_ptr, i_r, m, D, False, BLOCK_D)
    return b_x, b_res, b_gate, b_sc, b_sh, b_g


@triton.jit
def _store_gate(gate_out_ptr, b_g, i_t, n_rows, D, BLOCK_R: tl.constexpr,
                BLOCK_D: tl.constexpr):
    _, o, m = row_tile(i_t, n_rows, D, BLOCK_R, BLOCK_D)
    tl.store(gate_out_ptr + o, tl.broadcast_to(b_g, [BLOCK_R, BLOCK_D]), mask=m)


@triton.jit
def _finish_tile(b_x, b_res, b_gate, b_sc, b_sh, b_w, w_ptr, style_ptr, i_t, res_ptr, out_ptr,
                 n_rows, D, eps, inv_scale, FUSED: tl.constexpr, BROADCAST: tl.constexpr,
                 LATE_STYLE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """(fused: residual update, stored), RMS, modulation, out store. LATE_STYLE: the
    weight, scale and shift are loaded here, after the reduction (b_sc, b_sh, b_w
    unused), so that they are not live across it."""
    i_r, o, m = row_tile(i_t, n_rows, D, BLOCK_R, BLOCK_D)
    b_n = b_x.to(tl.float32)
    if FUSED:
        b_rounded = (b_res.to(tl.float32) + b_n * b_gate.to(tl.float32)).to(tl.bfloat16)
        tl.store(res_ptr + o, b_rounded, mask=m)
        b_n = b_rounded.to(tl.float32)  # the RMS and the value use the rounded residual
    r = tl.math.rsqrt(tl.sum(b_n * b_n, 1) / D + eps)[:, None]
    if LATE_STYLE:
        b_w = load_row_vector(w_ptr, D, BLOCK_D)
        b_sc = _load_style_chunk(style_ptr, i_r, m, D, 0, BROADCAST, BLOCK_D)
        b_sh = _load_style_chunk(style_ptr, i_r, m, D, 1, BROADCAST, BLOCK_D)
    v = (b_n * r * b_w) * (1.0 + b_sc.to(tl.float32)) + b_sh.to(tl.float32)
    if FUSED:
        tl.store(out_ptr + o, quantize_fp8_e4m3(v, inv_scale), mask=m)
    else:
        tl.store(out_ptr + o, v.to(tl.bfloat16), mask=m)



@triton.jit
def _chunked_row(res_ptr, x_ptr, gate_ptr, w_ptr, style_ptr, out_ptr, gate_out_ptr, i_row, D,
                 eps, inv_scale, FUSED: tl.constexpr, BROADCAST: tl.constexpr,
                 BLOCK_D: tl.constexpr):
    """One wide row: the sum of squares over chunks (the fused op stores the residual),
    then modulate chunk by chunk, re-reading the row (from L2)."""
    o_row = i_row.to(tl.int64) * D
    p_st = style_ptr
    if not BROADCAST:
        p_st += i_row.to(tl.int64) * (3 * D)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for c in range(0, tl.cdiv(D, BLOCK_D)):
        o_d = c * BLOCK_D + tl.arange(0, BLOCK_D)
        m = o_d < D
        b_x = tl.load(x_ptr + o_row + o_d, mask=m, other=0.0).to(tl.float32)
        if FUSED:
            b_res = tl.load(res_ptr + o_row + o_d, mask=m, other=0.0).to(tl.float32)
            b_gate = tl.load(gate_ptr + o_row + o_d, mask=m, other=0.0).to(tl.float32)
            b_rounded = (b_res + b_x * b_gate).to(tl.bfloat16)
            tl.store(res_ptr + o_row + o_d, b_rounded, mask=m)
            b_x = b_rounded.to(tl.float32)
        acc += b_x * b_x
    r = tl.math.rsqrt(tl.sum(acc, 0) / D + eps)
    tl.debug_barrier()  # pass 2 re-reads the residual pass 1 stored
    src = res_ptr if FUSED else x_ptr
    for c in range(0, tl.cdiv(D, BLOCK_D)):
        o_d = c * BLOCK_D + tl.arange(0, BLOCK_D)
        m = o_d < D
        b_n = tl.load(src + o_row + o_d, mask=m, other=0.0).to(tl.float32)
        b_w = tl.load(w_ptr + o_d, mask=m, other=0.0).to(tl.float32)
        b_sc = tl.load(p_st + o_d, mask=m, other=0.0).to(tl.float32)
        b_sh = tl.load(p_st + D + o_d, mask=m, other=0.0).to(tl.float32)
        b_g = tl.load(p_st + 2 * D + o_d, mask=m, other=0.0)
        v = (b_n * r * b_w) * (1.0 + b_sc) + b_sh
        if FUSED:
            tl.store(out_ptr + o_row + o_d, quantize_fp8_e4m3(v, inv_scale), mask=m)
        else:
            tl.store(out_ptr + o_row + o_d, v.to(tl.bfloat16), mask=m)
        tl.store(gate_out_ptr + o_row + o_d, b_g, mask=m)


@triton.jit(do_not_specialize=["n_rows"])
def _ada_norm_kernel(
    res_ptr, x_ptr, gate_ptr, w_ptr, style_ptr, scale_ptr, out_ptr, gate_out_ptr,
    n_rows, D, eps,
    FUSED: tl.constexpr, BROADCAST: tl.constexpr, CHUNKED: tl.constexpr,
    PERSISTENT: tl.constexpr, LATE_STYLE: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr, PREFETCH: tl.constexpr = 1, PDL: tl.constexpr = False,
):
    """One tile of BLOCK_R rows per program, a persistent loop over tiles (LATE_STYLE
    unused; PREFETCH 1 or 2: the loads of that many next tiles in flight while a tile is
    reduced and stored), or one wide row in BLOCK_D chunks (CHUNKED). Every load of a
    tile is issued before its reduction, so their latencies overlap; LATE_STYLE: the
    weight, scale and shift after it, the gate chunk copied to gate_out first."""
    enter_dependent_launch(PDL)
    inv_scale = 1.0
    if FUSED:
        inv_scale = tl.math.div_rn(1.0, tl.load(scale_ptr).to(tl.float32))
    i_t = tl.program_id(0)
    if CHUNKED:
        _chunked_row(res_ptr, x_ptr, gate_ptr, w_ptr, style_ptr, out_ptr, gate_out_ptr, i_t, D,
                     eps, inv_scale, FUSED, BROADCAST, BLOCK_D)
    elif PERSISTENT:
        b_x, b_res, b_gate, b_sc, b_sh, b_g = _load_tile(
            res_ptr, x_ptr, gate_ptr, style_ptr, i_t, n_rows, D, FUSED, BROADCAST, False,
            BLOCK_R, BLOCK_D)
        if BROADCAST:  # one style row for every tile
            b_sc, b_sh, b_g = _load_style(style_ptr, i_t, b_x, D, True, BLOCK_D)
        b_w = load_row_vector(w_ptr, D, BLOCK_D)
        step = tl.num_programs(0)
        if PREFETCH == 2:  # the tile after the next one's loads, issued before the loop
            m_x, m_res, m_gate, m_sc, m_sh, m_g = _load_tile(
                res_ptr, x_ptr, gate_ptr, style_ptr, i_t + step, n_rows, D, FUSED,
                BROADCAST, False, BLOCK_R, BLOCK_D)
        for _ in range(i_t, tl.cdiv(n_rows, BLOCK_R), step):
            # the next tiles' loads are in flight while this one is reduced and stored
            n_x, n_res, n_gate, n_sc, n_sh, n_g = _load_tile(
                res_ptr, x_ptr, gate_ptr, style_ptr, i_t + PREFETCH * step, n_rows, D, FUSED,
                BROADCAST, False, BLOCK_R, BLOCK_D)
            _finish_tile(b_x, b_res, b_gate, b_sc, b_sh, b_w, w_ptr, style_ptr, i_t, res_ptr,
                         out_ptr, n_rows, D, eps, inv_scale, FUSED, BROADCAST, False, BLOCK_R,
                         BLOCK_D)
            _store_gate(gate_out_ptr, b_g, i_t, n_rows, D, BLOCK_R, BLOCK_D)
            i_t += step
            if PREFETCH == 2:
                b_x, b_res, b_gate, m_x, m_res, m_gate = m_x, m_res, m_gate, n_x, n_res, n_gate
                if not BROADCAST:
                    b_sc, b_sh, b_g, m_sc, m_sh, m_g = m_sc, m_sh, m_g, n_sc, n_sh, n_g
            else:
                b_x, b_res, b_gate = n_x, n_res, n_gate
                if not BROADCAST:
                    b_sc, b_sh, b_g = n_sc, n_sh, n_g
    else:
        b_x, b_res, b_gate, b_sc, b_sh, b_g = _load_tile(
            res_ptr, x_ptr, gate_ptr, style_ptr, i_t, n_rows, D, FUSED, BROADCAST, LATE_STYLE,
            BLOCK_R, BLOCK_D)
        b_w = b_x  # placeholder: LATE_STYLE loads the weight after the reduction
        if LATE_STYLE:
            i_r, _, m = row_tile(i_t, n_rows, D, BLOCK_R, BLOCK_D)
            b_g = _load_style_chunk(style_ptr, i_r, m, D, 2, BROADCAST, BLOCK_D)
            _store_gate(gate_out_ptr, b_g, i_t, n_rows, D, BLOCK_R, BLOCK_D)
        else:
            if BROADCAST:
                b_sc, b_sh, b_g = _load_style(style_ptr, i_t, b_x, D, True, BLOCK_D)
            b_w = load_row_vector(w_ptr, D, BLOCK_D)
        _finish_tile(b_x, b_res, b_gate, b_sc, b_sh, b_w, w_ptr, style_ptr, i_t, res_ptr,
                     out_ptr, n_rows, D, eps, inv_scale, FUSED, BROADCAST, LATE_STYLE, BLOCK_R,
                     BLOCK_D)
        if not LATE_STYLE:
            _store_gate(gate_out_ptr, b_g, i_t, n_rows, D, BLOCK_R, BLOCK_D)


def _launch(residual, x, gate, weight, style, scale, out, gate_out, eps, cfg=None,
            late_style=None, prefetch=1):
    """``cfg`` / ``late_style`` None: the launch rule; else forced (the tune script, which
    also sets a persistent grid's ``prefetch`` depth; the rule's is 1). Returns the
    launched kernel."""
    n_rows, D = x.shape
    broadcast = style.shape[0] == 1
    fused = residual is not None
    cfg = cfg or row_config(D, n_rows, x.device, broadcast, fused)
    if late_style is None:
        late_style = late_style_loads(cfg, n_rows, x.device, broadcast, fused)
    with device_guard(x):
        return _ada_norm_kernel[(row_grid(cfg, n_rows, x.device),)](
            residual, x, gate, weight, style, scale, out, gate_out, n_rows, D, eps,
            FUSED=fused, BROADCAST=broadcast, CHUNKED=cfg.chunked,
            PERSISTENT=cfg.persistent > 0, LATE_STYLE=late_style, BLOCK_R=cfg.block_r,
            BLOCK_D=cfg.block_d, PREFETCH=prefetch, num_warps=cfg.num_warps,
            enable_fp_fusion=False,
            **dependent_launch(x.device),
        )


# ----------------------------------------------------------------------------
# Shape checks shared by the wrappers and the fakes
# ----------------------------------------------------------------------------


def _check_shapes(x, weight, style, out=None, gate_out=None, *, residual=None, gate=None,
                  scale=None):
    lead = x if residual is None else residual
    check_rows_even_dim(lead, "x" if residual is None else "residual")
    rows, D = lead.shape
    if residual is not None:
        if x.shape != residual.shape or gate.shape != residual.shape:
            raise RuntimeError("x and gate must have the same shape as residual, got "
                               f"{tuple(x.shape)} and {tuple(gate.shape)} for {tuple(residual.shape)}")
    check_shape(weight, "weight", (D,), "weight must have shape (dim,)")
    if style.dim() != 2 or style.shape[1] != 3 * D or style.shape[0] not in (1, rows):
        raise RuntimeError(f"style must have shape (rows, 3 * dim) or (1, 3 * dim) = "
                           f"({rows}, {3 * D}) or (1, {3 * D}), got {tuple(style.shape)}")
    if scale is not None and scale.numel() != 1:
        raise RuntimeError(f"scale must be a scalar tensor (one element), got {scale.numel()}")
    _check_out_shapes(lead, out, gate_out)


def _check_out_shapes(lead, *outs):
    for t in outs:
        if t is not None and t.shape != lead.shape:
            raise RuntimeError("out and gate_out must have the same shape as x, got "
                               f"{tuple(t.shape)} for {tuple(lead.shape)}")


# ----------------------------------------------------------------------------
# Ops (out-variant, void) + fakes for torch.compile
# ----------------------------------------------------------------------------


@torch.library.custom_op(add_op_namespace_prefix("ada_rms_norm_style_bf16"),
                         mutates_args=("out", "gate_out"))
def _ada_rms_norm_style_op(x: torch.Tensor, weight: torch.Tensor, style: torch.Tensor,
                           eps: float, out: torch.Tensor, gate_out: torch.Tensor) -> None:
    _launch(None, x, None, weight, style, None, out, gate_out, eps)


@torch.library.register_fake(add_op_namespace_prefix("ada_rms_norm_style_bf16"))
def _ada_rms_norm_style_fake(x, weight, style, eps, out, gate_out):
    _check_shapes(x, weight, style, out, gate_out)


@torch.library.custom_op(add_op_namespace_prefix("gate_residual_ada_norm_fp8_static_bf16"),
                         mutates_args=("residual", "out", "gate_out"))
def _gate_residual_ada_norm_op(residual: torch.Tensor, x: torch.Tensor, gate: torch.Tensor,
                               weight: torch.Tensor, style: torch.Tensor, scale: torch.Tensor,
                               eps: float, out: torch.Tensor, gate_out: torch.Tensor) -> None:
    _launch(residual, x, gate, weight, style, scale, out, gate_out, eps)


@torch.library.register_fake(add_op_namespace_prefix("gate_residual_ada_norm_fp8_static_bf16"))
def _gate_residual_ada_norm_fake(residual, x, gate, weight, style, scale, eps, out, gate_out):
    _check_shapes(x, weight, style, out, gate_out, residual=residual, gate=gate, scale=scale)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def _outputs(lead, out, gate_out, out_dtype, named):
    out = torch.empty(lead.shape, dtype=out_dtype, device=lead.device) if out is None else out
    gate_out = torch.empty_like(lead) if gate_out is None else gate_out
    check_tensor(out, "out", out_dtype)
    check_tensor(gate_out, "gate_out", _BF16)
    _check_out_shapes(lead, out, gate_out)
    check_same_device(named + [("out", out), ("gate_out", gate_out)])
    return out, gate_out


def ada_rms_norm_style_bf16(
    x: torch.Tensor, weight: torch.Tensor, style: torch.Tensor, eps: float = 1e-6,
    out: Optional[torch.Tensor] = None, gate_out: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``out = bf16(((x·r)·w)·(1 + sc) + sh)``, ``gate_out = gate`` chunk of ``style``
    (rows, 3·D) or (1, 3·D) = ``[scale | shift | gate]``. Returns ``(out, gate_out)``."""
    named = [("x", x), ("weight", weight), ("style", style)]
    for name, t in named:
        check_tensor(t, name, _BF16)
    _check_shapes(x, weight, style)
    out, gate_out = _outputs(x, out, gate_out, _BF16, named)
    if launch_directly(x):
        _launch(None, x, None, weight, style, None, out, gate_out, eps)
    else:
        _ada_rms_norm_style_op(x, weight, style, eps, out, gate_out)
    return out, gate_out


def gate_residual_ada_norm_fp8_static_bf16(
    residual: torch.Tensor, x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor,
    style: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6,
    out: Optional[torch.Tensor] = None, gate_out: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``residual ← bf16(residual + x·gate)`` in place; then the ada norm of the rounded
    residual (RMS of the rounded values too), FP8 E4M3 out with ``1/scale``.
    Returns ``(residual, out, gate_out)``."""
    named = [("residual", residual), ("x", x), ("gate", gate), ("weight", weight),
             ("style", style)]
    for name, t in named:
        check_tensor(t, name, _BF16)
    check_tensor(scale, "scale", _FP32)
    named.append(("scale", scale))
    _check_shapes(x, weight, style, residual=residual, gate=gate, scale=scale)
    out, gate_out = _outputs(residual, out, gate_out, _FP8, named)
    if launch_directly(residual):
        _launch(residual, x, gate, weight, style, scale, out, gate_out, eps)
    else:
        _gate_residual_ada_norm_op(residual, x, gate, weight, style, scale, eps, out, gate_out)
    return residual, out, gate_out
