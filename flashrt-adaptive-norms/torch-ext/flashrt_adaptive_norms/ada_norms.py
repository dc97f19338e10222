"""AdaLN-style RMSNorm with per-token (or broadcast) modulation, one launch per call.

Two public functions (spec: postprocess-norms.md §5):

* ``ada_rms_norm_style_bf16``                 out = bf16(((x·r)·w)·(1 + sc) + sh); gate_out = gate chunk
* ``gate_residual_ada_norm_fp8_static_bf16``  residual ← bf16(residual + x·gate) in place, then the
                                              same norm + modulation of the *rounded* residual, FP8 out

``style`` is (rows, 3·D) or (1, 3·D) (broadcast by a zero row stride, never
materialized), laid out ``[scale | shift | gate]``. Operation order as written,
every product rounded before the following add (fp-fusion off: no FMA), as in
the eager reference and the spec's explicit RN mul/add.

Rows of up to ``ROW_MAX_BLOCK`` elements stay in registers (``_host.row_config``);
wider rows are done in ``ROW_CHUNK``-wide chunks over two passes (sum of squares, then modulate and store;
the fused op re-reads the residual it stored in pass one).
"""

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ._helpers import quantize_fp8_e4m3, rms_inv
from ._host import (cdiv, check_rows_even_dim, check_same_device, check_shape, check_tensor,
                    device_guard, launch_directly, row_config)
from ._ops import add_op_namespace_prefix

_BF16 = torch.bfloat16
_FP32 = torch.float32
_FP8 = torch.float8_e4m3fn


@triton.jit
def _modulate(b_n, p_st, o_d, m, D, r, b_w, out_ptr, o, gate_out_ptr, inv_scale,
              QUANT: tl.constexpr):
    """out = ((n·r)·w)·(1 + sc) + sh; gate_out = the style's gate chunk (bit copy)."""
    b_sc = tl.load(p_st + o_d, mask=m, other=0.0).to(tl.float32)
    b_sh = tl.load(p_st + D + o_d, mask=m, other=0.0).to(tl.float32)
    b_g = tl.load(p_st + 2 * D + o_d, mask=m, other=0.0)
    v = (b_n * r * b_w) * (1.0 + b_sc) + b_sh
    if QUANT:
        tl.store(out_ptr + o, quantize_fp8_e4m3(v, inv_scale), mask=m)
    else:
        tl.store(out_ptr + o, v.to(tl.bfloat16), mask=m)
    tl.store(gate_out_ptr + o, b_g, mask=m)


@triton.jit(do_not_specialize=["n_rows", "style_stride"])
def _ada_norm_kernel(
    res_ptr, x_ptr, gate_ptr, w_ptr, style_ptr, scale_ptr, out_ptr, gate_out_ptr,
    n_rows, D, style_stride, eps,
    FUSED: tl.constexpr, CHUNKED: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    i_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    m_r = i_r < n_rows
    o_row = i_r[:, None] * D
    p_st = style_ptr + i_r[:, None] * style_stride  # stride 0: one broadcast style row
    inv_scale = 1.0
    if FUSED:
        inv_scale = tl.math.div_rn(1.0, tl.load(scale_ptr).to(tl.float32))
    if not CHUNKED:
        o_d = tl.arange(0, BLOCK_D)
        m_d = o_d < D
        m = m_r[:, None] & m_d[None, :]
        o = o_row + o_d[None, :]
        b_x = tl.load(x_ptr + o, mask=m, other=0.0).to(tl.float32)
        if FUSED:
            b_res = tl.load(res_ptr + o, mask=m, other=0.0).to(tl.float32)
            b_gate = tl.load(gate_ptr + o, mask=m, other=0.0).to(tl.float32)
        b_w = tl.load(w_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)[None, :]
        if FUSED:
            b_rounded = (b_res + b_x * b_gate).to(tl.bfloat16)
            tl.store(res_ptr + o, b_rounded, mask=m)
            b_x = b_rounded.to(tl.float32)  # the RMS and the value use the rounded residual
        r = rms_inv(tl.sum(b_x * b_x, 1), D, eps)[:, None]
        _modulate(b_x, p_st, o_d[None, :], m, D, r, b_w, out_ptr, o, gate_out_ptr, inv_scale,
                  QUANT=FUSED)
    else:
        acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)
        for c in range(0, tl.cdiv(D, BLOCK_D)):
            o_d = c * BLOCK_D + tl.arange(0, BLOCK_D)
            m = m_r[:, None] & (o_d < D)[None, :]
            o = o_row + o_d[None, :]
            b_x = tl.load(x_ptr + o, mask=m, other=0.0).to(tl.float32)
            if FUSED:
                b_res = tl.load(res_ptr + o, mask=m, other=0.0).to(tl.float32)
                b_gate = tl.load(gate_ptr + o, mask=m, other=0.0).to(tl.float32)
                b_rounded = (b_res + b_x * b_gate).to(tl.bfloat16)
                tl.store(res_ptr + o, b_rounded, mask=m)
                b_x = b_rounded.to(tl.float32)
            acc += b_x * b_x
        r = rms_inv(tl.sum(acc, 1), D, eps)[:, None]
        tl.debug_barrier()  # pass 2 re-reads the residual pass 1 stored
        for c in range(0, tl.cdiv(D, BLOCK_D)):
            o_d = c * BLOCK_D + tl.arange(0, BLOCK_D)
            m_d = o_d < D
            m = m_r[:, None] & m_d[None, :]
            o = o_row + o_d[None, :]
            if FUSED:
                b_n = tl.load(res_ptr + o, mask=m, other=0.0).to(tl.float32)
            else:
                b_n = tl.load(x_ptr + o, mask=m, other=0.0).to(tl.float32)
            b_w = tl.load(w_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)[None, :]
            _modulate(b_n, p_st, o_d[None, :], m, D, r, b_w, out_ptr, o, gate_out_ptr,
                      inv_scale, QUANT=FUSED)




def _launch(residual, x, gate, weight, style, scale, out, gate_out, eps):
    n_rows, D = x.shape
    chunked, block_r, block_d, num_warps = row_config(D)
    style_stride = 0 if style.shape[0] == 1 else 3 * D
    with device_guard(x):
        _ada_norm_kernel[(cdiv(n_rows, block_r),)](
            residual, x, gate, weight, style, scale, out, gate_out, n_rows, D, style_stride, eps,
            FUSED=residual is not None, CHUNKED=chunked, BLOCK_R=block_r, BLOCK_D=block_d,
            num_warps=num_warps, enable_fp_fusion=False,
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
