"""Post-GEMM epilogues (spec gemm-quant.md §3).

* Quantize epilogues (memory-bound, the package's headline surface), over
  ``numel / N`` rows of the last dimension N:
  ``bias_gelu_quantize_fp8_static_bf16``  ``Q8(G(f32(x) + f32(bias[col])), s)``
  ``gelu_quantize_fp8_static_bf16``       ``Q8(G(f32(x)), s)``
  ``channel_scale_quantize_fp8_static_bf16`` ``Q8(f32(x) * f32(c[col]), s)`` as ``(x*c)*r``
* BF16 GEMMs with ``b`` / ``w`` **[K, N]** row-major (``y = a @ b``), fp32
  accumulation, epilogue on the accumulator, one BF16 rounding:
  ``bf16_linear_bf16`` ``bf16(x @ w)``; ``bf16_linear_bias_bf16`` / ``bf16_gemm_bias``
  ``bf16(a @ b + f32(bias))``; ``bf16_gemm_bias_gelu`` ``bf16(G(a @ b + f32(bias)))``.
  Kernels and launch rule in bf16_gemm.py (a swap-AB split-K kernel for decode rows).

``Q8(v, s)``: ``v * fp32(1/s)``, clamp to +-448 (NaN -> -448), RNE to E4M3.
GELU is the tanh form. One deterministic configuration per shape (no autotune).
"""

from typing import Optional

import torch
import triton
import triton.language as tl

from ._helpers import gelu_tanh, quantize_fp8_e4m3
from ._host import (cdiv, check_bias, check_matrix, check_out, check_same_device, check_scale,
                    check_tensor, device_guard, launch_directly, next_power_of_2)
from ._ops import add_op_namespace_prefix
from .bf16_gemm import EPI_BIAS, EPI_BIAS_GELU, EPI_NONE, launch_bf16_gemm

FP8 = torch.float8_e4m3fn
BF16 = torch.bfloat16
Tensor = torch.Tensor

Q_BIAS_GELU, Q_GELU, Q_CHANNEL = 0, 1, 2


# ----------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------


@triton.jit(do_not_specialize=["n_rows"])
def _quantize_kernel(x_ptr, vec_ptr, s_ptr, out_ptr, n_rows, N,
                     MODE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """BLOCK_R rows x BLOCK_N columns per program; the per-column vector broadcasts."""
    o_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    o_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    m_n = o_n < N
    m = (o_r < n_rows)[:, None] & m_n[None, :]
    o = o_r[:, None] * N + o_n[None, :]
    x = tl.load(x_ptr + o, mask=m, other=0.0).to(tl.float32)
    if MODE != 1:
        v = tl.load(vec_ptr + o_n, mask=m_n, other=0.0).to(tl.float32)[None, :]
    inv = tl.div_rn(1.0, tl.load(s_ptr).to(tl.float32))
    if MODE == 0:
        y = gelu_tanh(x + v)
    elif MODE == 1:
        y = gelu_tanh(x)
    else:
        y = x * v
    tl.store(out_ptr + o, quantize_fp8_e4m3(y, inv), mask=m)


# ----------------------------------------------------------------------------
# Launch configuration (analytic, one per shape and device)
# ----------------------------------------------------------------------------


QUANT_LARGE = 1 << 24  # elements from which programs take 4x the rows


def quantize_config(n_rows, N):
    """(BLOCK_R, BLOCK_N, num_warps): up to 1024 columns and >= 1024 elements per
    program, 8 per thread (one 16-byte load), so small inputs spread over many SMs
    (measured on H200: 64 x 4096 bias + GELU 2.2 us, 2.5 with 4096 elements per
    program at 8 warps); 4x the rows from QUANT_LARGE elements, where GELU's arithmetic
    bounds the time (8192 x 4096: 40.9 us, 42.3 with one row)."""
    block_n = min(1024, next_power_of_2(N))
    block_r = max(1, 1024 // block_n) * (4 if n_rows * N >= QUANT_LARGE else 1)
    return block_r, block_n, max(1, block_n // 256)


def _launch_quantize(x, vec, scale, out, mode, cfg=None):
    """``cfg`` (a ``quantize_config`` tuple) overrides the launch rule."""
    N = x.shape[-1]
    n_rows = x.numel() // N
    block_r, block_n, warps = cfg or quantize_config(n_rows, N)
    grid = (cdiv(n_rows, block_r), cdiv(N, block_n))
    with device_guard(x):
        _quantize_kernel[grid](x, scale if vec is None else vec, scale, out, n_rows, N,
                               MODE=mode, BLOCK_R=block_r, BLOCK_N=block_n,
                               num_warps=warps)


# ----------------------------------------------------------------------------
# Checks shared by wrappers and fakes
# ----------------------------------------------------------------------------


def _check_gemm(a, b, bias, out, names):
    """names: (a, b) argument names, e.g. ("a", "b") or ("x", "w")."""
    na, nb = names
    check_matrix(a, na, BF16)
    check_matrix(b, nb, BF16)
    if a.shape[1] != b.shape[0]:
        raise RuntimeError(f"{na}.shape[1] must match {nb}.shape[0], got {a.shape[1]} and "
                           f"{b.shape[0]}")
    if bias is not None:
        check_bias(bias, "bias", b.shape[1], f"{nb}.shape[1]")
    if out is not None:
        shape = (a.shape[0], b.shape[1])
        check_out(out, "out", BF16, shape, f"out must have shape ({na}.shape[0], {nb}.shape[1]) "
                                            f"= {shape}")


def _check_quantize(x, vec, vec_name, scale, out):
    check_tensor(x, "input", BF16)
    if x.dim() < 1 or x.numel() == 0 or x.shape[-1] == 0:
        raise RuntimeError(f"input must have dim >= 1 and be non-empty, got {tuple(x.shape)}")
    check_scale(scale, "scale")
    if vec is not None:
        check_bias(vec, vec_name, x.shape[-1], "the last input dimension")
    if out is not None:
        check_tensor(out, "out", FP8)
        if out.shape != x.shape:
            raise RuntimeError(f"out must have the same shape as input, got {tuple(out.shape)} "
                               f"for {tuple(x.shape)}")


# ----------------------------------------------------------------------------
# Ops + fakes
# ----------------------------------------------------------------------------


def _gemm_op(name, epi, names, with_bias):
    if with_bias:
        @torch.library.custom_op(add_op_namespace_prefix(name), mutates_args=("out",))
        def op(a: Tensor, b: Tensor, bias: Tensor, out: Tensor) -> None:
            launch_bf16_gemm(a, b, bias, out, epi)

        @torch.library.register_fake(add_op_namespace_prefix(name))
        def fake(a, b, bias, out):
            _check_gemm(a, b, bias, out, names)
    else:
        @torch.library.custom_op(add_op_namespace_prefix(name), mutates_args=("out",))
        def op(a: Tensor, b: Tensor, out: Tensor) -> None:
            launch_bf16_gemm(a, b, None, out, epi)

        @torch.library.register_fake(add_op_namespace_prefix(name))
        def fake(a, b, out):
            _check_gemm(a, b, None, out, names)
    return op


_linear_op = _gemm_op("bf16_linear_bf16", EPI_NONE, ("x", "w"), False)
_linear_bias_op = _gemm_op("bf16_linear_bias_bf16", EPI_BIAS, ("x", "w"), True)
_gemm_bias_op = _gemm_op("bf16_gemm_bias", EPI_BIAS, ("a", "b"), True)
_gemm_bias_gelu_op = _gemm_op("bf16_gemm_bias_gelu", EPI_BIAS_GELU, ("a", "b"), True)


def _quant_op(name, mode, vec_name):
    if vec_name is None:
        @torch.library.custom_op(add_op_namespace_prefix(name), mutates_args=("out",))
        def op(input: Tensor, scale: Tensor, out: Tensor) -> None:
            _launch_quantize(input, None, scale, out, mode)

        @torch.library.register_fake(add_op_namespace_prefix(name))
        def fake(input, scale, out):
            _check_quantize(input, None, None, scale, out)
    else:
        @torch.library.custom_op(add_op_namespace_prefix(name), mutates_args=("out",))
        def op(input: Tensor, vec: Tensor, scale: Tensor, out: Tensor) -> None:
            _launch_quantize(input, vec, scale, out, mode)

        @torch.library.register_fake(add_op_namespace_prefix(name))
        def fake(input, vec, scale, out):
            _check_quantize(input, vec, vec_name, scale, out)
    return op


_bias_gelu_quant_op = _quant_op("bias_gelu_quantize_fp8_static_bf16", Q_BIAS_GELU, "bias")
_gelu_quant_op = _quant_op("gelu_quantize_fp8_static_bf16", Q_GELU, None)
_channel_quant_op = _quant_op("channel_scale_quantize_fp8_static_bf16", Q_CHANNEL,
                              "channel_scale")


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def _gemm(a, b, bias, out, epi, names, op):
    _check_gemm(a, b, bias, out, names)
    if out is None:
        out = torch.empty((a.shape[0], b.shape[1]), dtype=BF16, device=a.device)
    named = [(names[0], a), (names[1], b), ("out", out)] + ([("bias", bias)] if bias is not None
                                                             else [])
    check_same_device(named)
    if launch_directly(a):
        launch_bf16_gemm(a, b, bias, out, epi)
    elif bias is None:
        op(a, b, out)
    else:
        op(a, b, bias, out)
    return out


def bf16_linear_bf16(x: Tensor, w: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """``out = bf16(x @ w)``, x bf16 [M, K], **w bf16 [K, N]**, fp32 accumulation."""
    return _gemm(x, w, None, out, EPI_NONE, ("x", "w"), _linear_op)


def bf16_linear_bias_bf16(x: Tensor, w: Tensor, bias: Tensor,
                          out: Optional[Tensor] = None) -> Tensor:
    """``out = bf16(x @ w + f32(bias))``: bias in the fp32 epilogue, one rounding."""
    return _gemm(x, w, bias, out, EPI_BIAS, ("x", "w"), _linear_bias_op)


def bf16_gemm_bias(a: Tensor, b: Tensor, bias: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """``out = bf16(a @ b + f32(bias))``, a [M, K], b [K, N], bias [N]."""
    return _gemm(a, b, bias, out, EPI_BIAS, ("a", "b"), _gemm_bias_op)


def bf16_gemm_bias_gelu(a: Tensor, b: Tensor, bias: Tensor,
                        out: Optional[Tensor] = None) -> Tensor:
    """``out = bf16(GELU_tanh(a @ b + f32(bias)))``."""
    return _gemm(a, b, bias, out, EPI_BIAS_GELU, ("a", "b"), _gemm_bias_gelu_op)


def _quantize(x, vec, vec_name, scale, out, mode, op):
    _check_quantize(x, vec, vec_name, scale, out)
    out = torch.empty(x.shape, dtype=FP8, device=x.device) if out is None else out
    named = [("input", x), ("scale", scale), ("out", out)]
    check_same_device(named + ([(vec_name, vec)] if vec is not None else []))
    if launch_directly(x):
        _launch_quantize(x, vec, scale, out, mode)
    elif vec is None:
        op(x, scale, out)
    else:
        op(x, vec, scale, out)
    return out


def bias_gelu_quantize_fp8_static_bf16(input: Tensor, bias: Tensor, scale: Tensor,
                                       out: Optional[Tensor] = None) -> Tensor:
    """``out = Q8(GELU_tanh(f32(input) + f32(bias[col])), scale)``; input bf16 [..., N]."""
    return _quantize(input, bias, "bias", scale, out, Q_BIAS_GELU, _bias_gelu_quant_op)


def gelu_quantize_fp8_static_bf16(input: Tensor, scale: Tensor,
                                  out: Optional[Tensor] = None) -> Tensor:
    """``out = Q8(GELU_tanh(f32(input)), scale)``; input bf16 [..., N]."""
    return _quantize(input, None, None, scale, out, Q_GELU, _gelu_quant_op)


def channel_scale_quantize_fp8_static_bf16(input: Tensor, channel_scale: Tensor, scale: Tensor,
                                           out: Optional[Tensor] = None) -> Tensor:
    """``out = Q8(f32(input) * f32(channel_scale[col]), scale)``, evaluated ``(x*c)*(1/s)``."""
    return _quantize(input, channel_scale, "channel_scale", scale, out, Q_CHANNEL,
                     _channel_quant_op)
