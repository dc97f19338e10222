"""Residual add + RMSNorm / LayerNorm + static FP8 quantization, one launch per call.

Five public functions (spec: postprocess-norms.md §3):

* ``rms_norm_bf16``                                 bf16(x·r·w)
* ``rms_norm_quant_fp8_static_bf16``                fp8(clamp(x·r·w / scale, ±448))
* ``residual_add_rms_norm_bf16``                    residual ← bf16(residual + x); bf16 out
* ``residual_add_rms_norm_quant_fp8_static_bf16``   same, FP8 out
* ``layer_norm_bf16``                               two-pass fp32 LayerNorm, bf16 out

``r = rsqrt(Σx²/D + eps)``. The residual variants take the RMS of the
*unrounded* fp32 sum ``a = residual + x`` but normalize the *rounded* residual
``bf16(a)`` that they store back in place (spec §3.2, §7.3).

Kernels work on rows. A row of up to ``ROW_MAX_BLOCK`` elements (``_host.row_config``) stays in
registers (one read of every input); wider rows are processed in chunks of
``ROW_CHUNK`` elements over two passes (sum of squares, then normalize and store;
three for LayerNorm), the later passes re-reading the row from L2. Several
short rows share one program. fp-fusion is off: every product is rounded before
the following add, as in the eager PyTorch reference.
"""

from typing import Optional

import torch
import triton
import triton.language as tl

from ._helpers import quantize_fp8_e4m3, rms_inv
from ._host import (cdiv, check_same_device, check_shape, check_tensor, device_guard,
                    launch_directly, row_config)
from ._ops import add_op_namespace_prefix

_BF16 = torch.bfloat16
_FP32 = torch.float32
_FP8 = torch.float8_e4m3fn


# ----------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------


@triton.jit(do_not_specialize=["n_rows"])
def _rms_norm_kernel(
    x_ptr, res_ptr, w_ptr, scale_ptr, out_ptr,
    n_rows, D, eps,
    HAS_RES: tl.constexpr, QUANT: tl.constexpr, CHUNKED: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """BLOCK_R rows per program (single pass), or one row in BLOCK_D chunks (CHUNKED)."""
    i_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    m_r = i_r < n_rows
    o_row = i_r[:, None] * D
    if QUANT:
        inv_scale = tl.math.div_rn(1.0, tl.load(scale_ptr).to(tl.float32))
    if not CHUNKED:
        o_d = tl.arange(0, BLOCK_D)
        m_d = o_d < D
        m = m_r[:, None] & m_d[None, :]
        o = o_row + o_d[None, :]
        b_x = tl.load(x_ptr + o, mask=m, other=0.0).to(tl.float32)
        if HAS_RES:
            b_res = tl.load(res_ptr + o, mask=m, other=0.0).to(tl.float32)
        b_w = tl.load(w_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)[None, :]
        if HAS_RES:
            b_a = b_res + b_x
            b_rounded = b_a.to(tl.bfloat16)
            tl.store(res_ptr + o, b_rounded, mask=m)
            r = rms_inv(tl.sum(b_a * b_a, 1), D, eps)[:, None]  # unrounded sum
            v = b_rounded.to(tl.float32) * r * b_w  # rounded residual
        else:
            r = rms_inv(tl.sum(b_x * b_x, 1), D, eps)[:, None]
            v = b_x * r * b_w
        if QUANT:
            tl.store(out_ptr + o, quantize_fp8_e4m3(v, inv_scale), mask=m)
        else:
            tl.store(out_ptr + o, v.to(tl.bfloat16), mask=m)
    else:
        acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)
        for c in range(0, tl.cdiv(D, BLOCK_D)):
            o_d = c * BLOCK_D + tl.arange(0, BLOCK_D)
            m = m_r[:, None] & (o_d < D)[None, :]
            o = o_row + o_d[None, :]
            b_x = tl.load(x_ptr + o, mask=m, other=0.0).to(tl.float32)
            if HAS_RES:
                b_a = tl.load(res_ptr + o, mask=m, other=0.0).to(tl.float32) + b_x
                tl.store(res_ptr + o, b_a.to(tl.bfloat16), mask=m)
                acc += b_a * b_a
            else:
                acc += b_x * b_x
        r = rms_inv(tl.sum(acc, 1), D, eps)[:, None]
        tl.debug_barrier()  # pass 2 re-reads the residual pass 1 stored
        src = res_ptr if HAS_RES else x_ptr
        for c in range(0, tl.cdiv(D, BLOCK_D)):
            o_d = c * BLOCK_D + tl.arange(0, BLOCK_D)
            m_d = o_d < D
            m = m_r[:, None] & m_d[None, :]
            o = o_row + o_d[None, :]
            b_x = tl.load(src + o, mask=m, other=0.0).to(tl.float32)
            b_w = tl.load(w_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)[None, :]
            v = b_x * r * b_w
            if QUANT:
                tl.store(out_ptr + o, quantize_fp8_e4m3(v, inv_scale), mask=m)
            else:
                tl.store(out_ptr + o, v.to(tl.bfloat16), mask=m)


@triton.jit(do_not_specialize=["n_rows"])
def _layer_norm_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr, n_rows, D, eps,
    CHUNKED: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Two-pass fp32 LayerNorm: mean, then the biased variance of x - mean."""
    i_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    m_r = i_r < n_rows
    o_row = i_r[:, None] * D
    if not CHUNKED:
        o_d = tl.arange(0, BLOCK_D)
        m_d = o_d < D
        m = m_r[:, None] & m_d[None, :]
        o = o_row + o_d[None, :]
        b_x = tl.load(x_ptr + o, mask=m, other=0.0).to(tl.float32)
        b_w = tl.load(w_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)[None, :]
        b_b = tl.load(b_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)[None, :]
        mean = (tl.sum(b_x, 1) / D)[:, None]
        b_c = tl.where(m, b_x - mean, 0.0)
        rstd = tl.math.div_rn(1.0, tl.sqrt_rn(tl.sum(b_c * b_c, 1) / D + eps))[:, None]
        tl.store(out_ptr + o, (b_c * rstd * b_w + b_b).to(tl.bfloat16), mask=m)
    else:
        acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)
        for c in range(0, tl.cdiv(D, BLOCK_D)):
            o_d = c * BLOCK_D + tl.arange(0, BLOCK_D)
            m = m_r[:, None] & (o_d < D)[None, :]
            acc += tl.load(x_ptr + o_row + o_d[None, :], mask=m, other=0.0).to(tl.float32)
        mean = (tl.sum(acc, 1) / D)[:, None]
        acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)
        for c in range(0, tl.cdiv(D, BLOCK_D)):
            o_d = c * BLOCK_D + tl.arange(0, BLOCK_D)
            m = m_r[:, None] & (o_d < D)[None, :]
            b_x = tl.load(x_ptr + o_row + o_d[None, :], mask=m, other=0.0).to(tl.float32)
            b_c = tl.where(m, b_x - mean, 0.0)
            acc += b_c * b_c
        rstd = tl.math.div_rn(1.0, tl.sqrt_rn(tl.sum(acc, 1) / D + eps))[:, None]
        for c in range(0, tl.cdiv(D, BLOCK_D)):
            o_d = c * BLOCK_D + tl.arange(0, BLOCK_D)
            m_d = o_d < D
            m = m_r[:, None] & m_d[None, :]
            o = o_row + o_d[None, :]
            b_x = tl.load(x_ptr + o, mask=m, other=0.0).to(tl.float32)
            b_w = tl.load(w_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)[None, :]
            b_b = tl.load(b_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)[None, :]
            tl.store(out_ptr + o, ((b_x - mean) * rstd * b_w + b_b).to(tl.bfloat16), mask=m)




def _launch_rms(x, residual, weight, scale, out, eps):
    n_rows, D = x.shape
    chunked, block_r, block_d, num_warps = row_config(D)
    with device_guard(x):
        _rms_norm_kernel[(cdiv(n_rows, block_r),)](
            x, residual, weight, scale, out, n_rows, D, eps,
            HAS_RES=residual is not None, QUANT=scale is not None, CHUNKED=chunked,
            BLOCK_R=block_r, BLOCK_D=block_d, num_warps=num_warps, enable_fp_fusion=False,
        )


def _launch_layer_norm(x, weight, bias, out, eps):
    n_rows, D = x.shape
    chunked, block_r, block_d, num_warps = row_config(D)
    with device_guard(x):
        _layer_norm_kernel[(cdiv(n_rows, block_r),)](
            x, weight, bias, out, n_rows, D, eps, CHUNKED=chunked, BLOCK_R=block_r,
            BLOCK_D=block_d, num_warps=num_warps, enable_fp_fusion=False,
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
