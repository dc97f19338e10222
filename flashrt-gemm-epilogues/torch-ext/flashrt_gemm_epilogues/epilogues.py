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

``Q8(v, s)``: ``v * fp32(1/s)``, clamp to +-448 (NaN -> -448), RNE to E4M3.
GELU is the tanh form. One deterministic configuration per shape (no autotune).
"""

import functools
from typing import Optional

import torch
import triton
import triton.language as tl

from ._helpers import gelu_tanh, grouped_tile, quantize_fp8_e4m3
from ._host import (cdiv, check_bias, check_matrix, check_out, check_same_device, check_scale,
                    check_tensor, device_guard, launch_directly, next_power_of_2, sm_count)
from ._ops import add_op_namespace_prefix

FP8 = torch.float8_e4m3fn
BF16 = torch.bfloat16
FP32 = torch.float32
Tensor = torch.Tensor

EPI_NONE, EPI_BIAS, EPI_BIAS_GELU = 0, 1, 2
Q_BIAS_GELU, Q_GELU, Q_CHANNEL = 0, 1, 2


# ----------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------


@triton.jit(do_not_specialize=["M"])
def _bf16_gemm_kernel(a_ptr, b_ptr, bias_ptr, c_ptr, M, N, K,
                      EPI: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, EVEN_K: tl.constexpr):
    """c[M, N] = epilogue(a[M, K] @ b[K, N]); grouped tile order, clamped row loads."""
    i_m, i_n = grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)

    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_k = tl.arange(0, BLOCK_K)
    r_n = o_n % N
    p_a = a_ptr + (o_m % M).to(tl.int64)[:, None] * K + o_k[None, :]
    p_b = b_ptr + o_k.to(tl.int64)[:, None] * N + r_n[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        if EVEN_K:
            b_a = tl.load(p_a)
            b_b = tl.load(p_b)
        else:
            m_k = o_k < K - k
            b_a = tl.load(p_a, mask=m_k[None, :], other=0.0)
            b_b = tl.load(p_b, mask=m_k[:, None], other=0.0)
        acc = tl.dot(b_a, b_b, acc)
        p_a += BLOCK_K
        p_b += BLOCK_K * N
    if EPI != 0:
        acc = acc + tl.load(bias_ptr + r_n).to(tl.float32)[None, :]
    if EPI == 2:
        acc = gelu_tanh(acc)
    m_c = (o_m < M)[:, None] & (o_n < N)[None, :]
    tl.store(c_ptr + o_m.to(tl.int64)[:, None] * N + o_n[None, :], acc.to(tl.bfloat16), mask=m_c)


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




@functools.lru_cache(maxsize=4096)
def _gemm_config(M, N, K, device):
    """(BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages) by M bucket; small M
    halves the column tile (down to 16) until the grid covers every SM."""
    if M <= 16:
        bm, warps, stages = 16, 4, 4
    elif M <= 64:
        bm, warps, stages = 32, 4, 4
    elif M <= 256:
        bm, warps, stages = 64, 4, 4
    else:
        bm, warps, stages = 128, 8, 3
    bn, bk = 128, 64
    if M <= 256:
        while bn > 16 and cdiv(M, bm) * cdiv(N, bn) < sm_count(device):
            bn //= 2
    return bm, bn, bk, 8, warps, stages


def _launch_gemm(a, b, bias, out, epi):
    M, K = a.shape
    N = b.shape[1]
    bm, bn, bk, group, warps, stages = _gemm_config(M, N, K, a.device)
    grid = (cdiv(M, bm) * cdiv(N, bn),)
    with device_guard(a):
        _bf16_gemm_kernel[grid](a, b, a if bias is None else bias, out, M, N, K, EPI=epi,
                                BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=group,
                                EVEN_K=K % bk == 0, num_warps=warps,
                                num_stages=stages)


def _launch_quantize(x, vec, scale, out, mode):
    N = x.shape[-1]
    n_rows = x.numel() // N
    block_n = min(1024, next_power_of_2(N))
    block_r = max(1, 4096 // block_n)
    grid = (cdiv(n_rows, block_r), cdiv(N, block_n))
    with device_guard(x):
        _quantize_kernel[grid](x, scale if vec is None else vec, scale, out, n_rows, N,
                               MODE=mode, BLOCK_R=block_r, BLOCK_N=block_n, num_warps=8)


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
            _launch_gemm(a, b, bias, out, epi)

        @torch.library.register_fake(add_op_namespace_prefix(name))
        def fake(a, b, bias, out):
            _check_gemm(a, b, bias, out, names)
    else:
        @torch.library.custom_op(add_op_namespace_prefix(name), mutates_args=("out",))
        def op(a: Tensor, b: Tensor, out: Tensor) -> None:
            _launch_gemm(a, b, None, out, epi)

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
        _launch_gemm(a, b, bias, out, epi)
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
