"""Static-scale FP8 gated FFN: SwiGLU / GeGLU (spec gemm-quant.md §2).

Seven public functions over the FP8 GEMM kernel of ``fp8_gemm.py``:

* ``fp8_gemm_bf16``                              ``bf16(sx*sw*acc)`` (as in flashrt-fp8-ffn)
* ``silu_mul_merged_quantize_fp8_static_bf16``   ``Q8(S(g) * u, s)`` over a merged
  ``gelu_mul_merged_quantize_fp8_static_bf16``   ``[M, 2H]`` row ``[gate | up]`` (G for GeGLU)
* ``fp8_swiglu_mlp_bf16`` / ``fp8_geglu_mlp_bf16``  gate/up GEMM with the gated product +
                                                  FP8 requant in its epilogue (one launch),
                                                  then the FP8 down GEMM to BF16
* ``bf16_fp8_*_mlp_bf16``                        BF16 entry: quantize the input (zero pad
                                                  rows up to ``pad_to``) in the same call

The fused gate/up launch writes ``gate_up_bf16`` exactly as ``fp8_gemm_bf16`` on the
merged weight would (same configuration, same K order) and ``hidden_fp8`` exactly
as the merged quantizer would on it: fused == staged bit for bit.
"""

from typing import Optional

import torch
import triton
import triton.language as tl

from ._host import cdiv, check_tensor, device_guard, launch_directly, next_power_of_2
from ._ops import add_op_namespace_prefix
from .fp8_gemm import (ACT_GELU, ACT_SILU, BF16, EPI_NONE, FP8, check_input_fp8, check_matrix,
                       check_out, check_padded, check_scale, empty,
                       gated_act_mul_quant, launch_fp8_gemm, padded_rows,
                       same_device)

Tensor = torch.Tensor
SCALES = ("input_scale", "gate_up_weight_scale", "hidden_scale", "down_weight_scale")


# ----------------------------------------------------------------------------
# Merged activation quantizer
# ----------------------------------------------------------------------------


@triton.jit(do_not_specialize=["M"])
def _act_mul_quantize_kernel(gu_ptr, s_ptr, out_ptr, M, H, ACT: tl.constexpr,
                             BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr):
    o_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    o_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    m = (o_r < M)[:, None] & (o_h < H)[None, :]
    o_g = o_r[:, None] * (2 * H) + o_h[None, :]
    g = tl.load(gu_ptr + o_g, mask=m, other=0.0).to(tl.float32)
    u = tl.load(gu_ptr + o_g + H, mask=m, other=0.0).to(tl.float32)
    inv = tl.div_rn(1.0, tl.load(s_ptr).to(tl.float32))
    q = gated_act_mul_quant(g, u, inv, ACT)
    tl.store(out_ptr + o_r[:, None] * H + o_h[None, :], q, mask=m)


def _run_act_quant(gate_up_bf16, output_scale, out_fp8, act):
    M, W = gate_up_bf16.shape
    H = W // 2
    block_h = min(1024, next_power_of_2(H))
    block_r = max(1, 2048 // block_h)
    grid = (cdiv(M, block_r), cdiv(H, block_h))
    with device_guard(gate_up_bf16):
        _act_mul_quantize_kernel[grid](gate_up_bf16, output_scale, out_fp8, M, H, ACT=act,
                                       BLOCK_R=block_r, BLOCK_H=block_h, num_warps=4)


# ----------------------------------------------------------------------------
# Checks shared by wrappers and fakes
# ----------------------------------------------------------------------------






def _check_act_quant(gate_up_bf16, output_scale, out_fp8):
    check_matrix(gate_up_bf16, "gate_up_bf16", BF16)
    if gate_up_bf16.shape[1] % 2 != 0:
        raise RuntimeError(f"gate_up_bf16.shape[1] must be even, got {gate_up_bf16.shape[1]}")
    check_scale(output_scale, "output_scale")
    if out_fp8 is not None:
        check_tensor(out_fp8, "out_fp8", FP8)
        if out_fp8.dim() != 2 or tuple(out_fp8.shape) != (gate_up_bf16.shape[0],
                                                         gate_up_bf16.shape[1] // 2):
            raise RuntimeError("out_fp8 must have shape (gate_up_bf16.shape[0], "
                               f"gate_up_bf16.shape[1] / 2), got {tuple(out_fp8.shape)}")


def _check_mlp(input, input_dtype, gate_up_weight, down_weight, scales):
    check_matrix(input, "input", input_dtype)
    check_matrix(gate_up_weight, "gate_up_weight", FP8)
    check_matrix(down_weight, "down_weight", FP8)
    for name, s in zip(SCALES, scales):
        check_scale(s, name)
    if gate_up_weight.shape[0] % 2 != 0:
        raise RuntimeError(f"gate_up_weight.shape[0] must be even, got {gate_up_weight.shape[0]}")
    if input.shape[1] != gate_up_weight.shape[1]:
        raise RuntimeError(f"input.shape[1] must match gate_up_weight.shape[1], got "
                           f"{input.shape[1]} and {gate_up_weight.shape[1]}")
    if down_weight.shape[1] != gate_up_weight.shape[0] // 2:
        raise RuntimeError(f"down_weight.shape[1] must match hidden size "
                           f"gate_up_weight.shape[0] / 2 = {gate_up_weight.shape[0] // 2}, "
                           f"got {down_weight.shape[1]}")


def _check_mlp_outs(rows, gate_up_weight, down_weight, gate_up_bf16, hidden_fp8, out):
    W, N = gate_up_weight.shape[0], down_weight.shape[0]
    check_out(gate_up_bf16, "gate_up_bf16", BF16, (rows, W),
              "gate_up_bf16 must have shape (input.shape[0], gate_up_weight.shape[0])")
    check_out(hidden_fp8, "hidden_fp8", FP8, (rows, W // 2),
              "hidden_fp8 must have shape (input.shape[0], gate_up_weight.shape[0] / 2)")
    check_out(out, "out", BF16, (rows, N),
              "out must have shape (input.shape[0], down_weight.shape[0])")


# ----------------------------------------------------------------------------
# Launches
# ----------------------------------------------------------------------------




def _run_mlp(input, gate_up_weight, down_weight, sx, sg, sh, sd, gate_up_bf16, hidden_fp8, out,
             act, x=None):
    """x: the BF16 input of a BF16 entry (``input`` is then its input_fp8 buffer)."""
    launch_fp8_gemm(input, gate_up_weight, sx, sg, gate_up_bf16, so=sh, q=hidden_fp8, act=act,
                    x=x)
    launch_fp8_gemm(hidden_fp8, down_weight, sh, sd, out, epi=EPI_NONE)


def _run_bf16_mlp(input, gate_up_weight, down_weight, sx, sg, sh, sd, input_fp8, gate_up_bf16,
                  hidden_fp8, out, act):
    _run_mlp(input_fp8, gate_up_weight, down_weight, sx, sg, sh, sd, gate_up_bf16, hidden_fp8,
             out, act, x=input)


# ----------------------------------------------------------------------------
# Ops + fakes
# ----------------------------------------------------------------------------






def _act_quant_op(name, act):
    @torch.library.custom_op(add_op_namespace_prefix(name), mutates_args=("out_fp8",))
    def op(gate_up_bf16: Tensor, output_scale: Tensor, out_fp8: Tensor) -> None:
        _run_act_quant(gate_up_bf16, output_scale, out_fp8, act)

    @torch.library.register_fake(add_op_namespace_prefix(name))
    def fake(gate_up_bf16, output_scale, out_fp8):
        _check_act_quant(gate_up_bf16, output_scale, out_fp8)

    return op


_silu_quant_op = _act_quant_op("silu_mul_merged_quantize_fp8_static_bf16", ACT_SILU)
_gelu_quant_op = _act_quant_op("gelu_mul_merged_quantize_fp8_static_bf16", ACT_GELU)


def _mlp_op(name, act):
    @torch.library.custom_op(add_op_namespace_prefix(name),
                             mutates_args=("gate_up_bf16", "hidden_fp8", "out"))
    def op(input: Tensor, gate_up_weight: Tensor, down_weight: Tensor, input_scale: Tensor,
           gate_up_weight_scale: Tensor, hidden_scale: Tensor, down_weight_scale: Tensor,
           gate_up_bf16: Tensor, hidden_fp8: Tensor, out: Tensor) -> None:
        _run_mlp(input, gate_up_weight, down_weight, input_scale, gate_up_weight_scale,
                 hidden_scale, down_weight_scale, gate_up_bf16, hidden_fp8, out, act)

    @torch.library.register_fake(add_op_namespace_prefix(name))
    def fake(input, gate_up_weight, down_weight, input_scale, gate_up_weight_scale,
             hidden_scale, down_weight_scale, gate_up_bf16, hidden_fp8, out):
        _check_mlp(input, FP8, gate_up_weight, down_weight,
                   (input_scale, gate_up_weight_scale, hidden_scale, down_weight_scale))
        _check_mlp_outs(input.shape[0], gate_up_weight, down_weight, gate_up_bf16, hidden_fp8,
                        out)

    return op


_swiglu_op = _mlp_op("fp8_swiglu_mlp_bf16", ACT_SILU)
_geglu_op = _mlp_op("fp8_geglu_mlp_bf16", ACT_GELU)


def _bf16_mlp_op(name, act):
    @torch.library.custom_op(add_op_namespace_prefix(name),
                             mutates_args=("input_fp8", "gate_up_bf16", "hidden_fp8", "out"))
    def op(input: Tensor, gate_up_weight: Tensor, down_weight: Tensor, input_scale: Tensor,
           gate_up_weight_scale: Tensor, hidden_scale: Tensor, down_weight_scale: Tensor,
           input_fp8: Tensor, gate_up_bf16: Tensor, hidden_fp8: Tensor, out: Tensor) -> None:
        _run_bf16_mlp(input, gate_up_weight, down_weight, input_scale, gate_up_weight_scale,
                      hidden_scale, down_weight_scale, input_fp8, gate_up_bf16, hidden_fp8, out,
                      act)

    @torch.library.register_fake(add_op_namespace_prefix(name))
    def fake(input, gate_up_weight, down_weight, input_scale, gate_up_weight_scale,
             hidden_scale, down_weight_scale, input_fp8, gate_up_bf16, hidden_fp8, out):
        _check_mlp(input, BF16, gate_up_weight, down_weight,
                   (input_scale, gate_up_weight_scale, hidden_scale, down_weight_scale))
        P = input_fp8.shape[0]
        if P < input.shape[0]:
            raise RuntimeError("input_fp8 must have at least input.shape[0] rows")
        check_input_fp8(input_fp8, P, input.shape[1])
        _check_mlp_outs(P, gate_up_weight, down_weight, gate_up_bf16, hidden_fp8, out)

    return op


_bf16_swiglu_op = _bf16_mlp_op("bf16_fp8_swiglu_mlp_bf16", ACT_SILU)
_bf16_geglu_op = _bf16_mlp_op("bf16_fp8_geglu_mlp_bf16", ACT_GELU)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------






def _act_quant(gate_up_bf16, output_scale, out_fp8, act, op):
    _check_act_quant(gate_up_bf16, output_scale, out_fp8)
    if out_fp8 is None:
        out_fp8 = empty(gate_up_bf16, gate_up_bf16.shape[0], gate_up_bf16.shape[1] // 2, FP8)
    same_device(("gate_up_bf16", gate_up_bf16), ("output_scale", output_scale),
                ("out_fp8", out_fp8))
    if launch_directly(gate_up_bf16):
        _run_act_quant(gate_up_bf16, output_scale, out_fp8, act)
    else:
        op(gate_up_bf16, output_scale, out_fp8)
    return out_fp8


def silu_mul_merged_quantize_fp8_static_bf16(gate_up_bf16: Tensor, output_scale: Tensor,
                                             out_fp8: Optional[Tensor] = None) -> Tensor:
    """``out_fp8[m, j] = Q8(S(f32(gu[m, j])) * f32(gu[m, H + j]), output_scale)``,
    ``S(x) = x / (1 + exp(-x))``, evaluated ``(act * up) * (1/s)``."""
    return _act_quant(gate_up_bf16, output_scale, out_fp8, ACT_SILU, _silu_quant_op)


def gelu_mul_merged_quantize_fp8_static_bf16(gate_up_bf16: Tensor, output_scale: Tensor,
                                             out_fp8: Optional[Tensor] = None) -> Tensor:
    """As ``silu_mul_merged_quantize_fp8_static_bf16`` with GELU(tanh) on the gate."""
    return _act_quant(gate_up_bf16, output_scale, out_fp8, ACT_GELU, _gelu_quant_op)


def _mlp(input, gate_up_weight, down_weight, scales, gate_up_bf16, hidden_fp8, out, act, op):
    _check_mlp(input, FP8, gate_up_weight, down_weight, scales)
    M, W, N = input.shape[0], gate_up_weight.shape[0], down_weight.shape[0]
    gate_up_bf16 = empty(input, M, W, BF16) if gate_up_bf16 is None else gate_up_bf16
    hidden_fp8 = empty(input, M, W // 2, FP8) if hidden_fp8 is None else hidden_fp8
    out = empty(input, M, N, BF16) if out is None else out
    _check_mlp_outs(M, gate_up_weight, down_weight, gate_up_bf16, hidden_fp8, out)
    same_device(("input", input), ("gate_up_weight", gate_up_weight),
                ("down_weight", down_weight), *zip(SCALES, scales),
                ("gate_up_bf16", gate_up_bf16), ("hidden_fp8", hidden_fp8), ("out", out))
    args = (input, gate_up_weight, down_weight, *scales, gate_up_bf16, hidden_fp8, out)
    if launch_directly(input):
        _run_mlp(*args, act)
    else:
        op(*args)
    return out


def fp8_swiglu_mlp_bf16(
    input: Tensor, gate_up_weight: Tensor, down_weight: Tensor, input_scale: Tensor,
    gate_up_weight_scale: Tensor, hidden_scale: Tensor, down_weight_scale: Tensor,
    gate_up_bf16: Optional[Tensor] = None, hidden_fp8: Optional[Tensor] = None,
    out: Optional[Tensor] = None,
) -> Tensor:
    """FP8 SwiGLU FFN: ``gu = bf16(sx*sg*acc(X, GU))`` (written to ``gate_up_bf16``),
    ``hidden_fp8 = Q8(S(gate) * up, hidden_scale)``, ``out = bf16(sh*sd*acc(hidden_fp8, D))``."""
    return _mlp(input, gate_up_weight, down_weight,
                (input_scale, gate_up_weight_scale, hidden_scale, down_weight_scale),
                gate_up_bf16, hidden_fp8, out, ACT_SILU, _swiglu_op)


def fp8_geglu_mlp_bf16(
    input: Tensor, gate_up_weight: Tensor, down_weight: Tensor, input_scale: Tensor,
    gate_up_weight_scale: Tensor, hidden_scale: Tensor, down_weight_scale: Tensor,
    gate_up_bf16: Optional[Tensor] = None, hidden_fp8: Optional[Tensor] = None,
    out: Optional[Tensor] = None,
) -> Tensor:
    """FP8 GeGLU FFN: as ``fp8_swiglu_mlp_bf16`` with GELU(tanh) on the gate."""
    return _mlp(input, gate_up_weight, down_weight,
                (input_scale, gate_up_weight_scale, hidden_scale, down_weight_scale),
                gate_up_bf16, hidden_fp8, out, ACT_GELU, _geglu_op)


def _bf16_mlp(input, gate_up_weight, down_weight, scales, input_fp8, gate_up_bf16, hidden_fp8,
              out, pad_to, act, op):
    _check_mlp(input, BF16, gate_up_weight, down_weight, scales)
    M, K = input.shape
    W, N = gate_up_weight.shape[0], down_weight.shape[0]
    P = padded_rows(input, pad_to, input_fp8)
    check_padded(P, (("input_fp8", input_fp8), ("gate_up_bf16", gate_up_bf16),
                     ("hidden_fp8", hidden_fp8), ("out", out)))
    input_fp8 = empty(input, P, K, FP8) if input_fp8 is None else input_fp8
    gate_up_bf16 = empty(input, P, W, BF16) if gate_up_bf16 is None else gate_up_bf16
    hidden_fp8 = empty(input, P, W // 2, FP8) if hidden_fp8 is None else hidden_fp8
    out = empty(input, P, N, BF16) if out is None else out
    check_input_fp8(input_fp8, P, K)
    _check_mlp_outs(P, gate_up_weight, down_weight, gate_up_bf16, hidden_fp8, out)
    same_device(("input", input), ("gate_up_weight", gate_up_weight),
                ("down_weight", down_weight), *zip(SCALES, scales), ("input_fp8", input_fp8),
                ("gate_up_bf16", gate_up_bf16), ("hidden_fp8", hidden_fp8), ("out", out))
    args = (input, gate_up_weight, down_weight, *scales, input_fp8, gate_up_bf16, hidden_fp8,
            out)
    if launch_directly(input):
        _run_bf16_mlp(*args, act)
    else:
        op(*args)
    return out[:M]


def bf16_fp8_swiglu_mlp_bf16(
    input: Tensor, gate_up_weight: Tensor, down_weight: Tensor, input_scale: Tensor,
    gate_up_weight_scale: Tensor, hidden_scale: Tensor, down_weight_scale: Tensor,
    input_fp8: Optional[Tensor] = None, gate_up_bf16: Optional[Tensor] = None,
    hidden_fp8: Optional[Tensor] = None, out: Optional[Tensor] = None, *,
    pad_to: Optional[int] = None,
) -> Tensor:
    """BF16 entry: ``input_fp8 = Q8(input, input_scale)`` (rows >= M zero, up to P), then
    ``fp8_swiglu_mlp_bf16`` over P rows; returns ``out[:M]``."""
    return _bf16_mlp(input, gate_up_weight, down_weight,
                     (input_scale, gate_up_weight_scale, hidden_scale, down_weight_scale),
                     input_fp8, gate_up_bf16, hidden_fp8, out, pad_to, ACT_SILU,
                     _bf16_swiglu_op)


def bf16_fp8_geglu_mlp_bf16(
    input: Tensor, gate_up_weight: Tensor, down_weight: Tensor, input_scale: Tensor,
    gate_up_weight_scale: Tensor, hidden_scale: Tensor, down_weight_scale: Tensor,
    input_fp8: Optional[Tensor] = None, gate_up_bf16: Optional[Tensor] = None,
    hidden_fp8: Optional[Tensor] = None, out: Optional[Tensor] = None, *,
    pad_to: Optional[int] = None,
) -> Tensor:
    """BF16 entry of ``fp8_geglu_mlp_bf16``; returns ``out[:M]``."""
    return _bf16_mlp(input, gate_up_weight, down_weight,
                     (input_scale, gate_up_weight_scale, hidden_scale, down_weight_scale),
                     input_fp8, gate_up_bf16, hidden_fp8, out, pad_to, ACT_GELU,
                     _bf16_geglu_op)
