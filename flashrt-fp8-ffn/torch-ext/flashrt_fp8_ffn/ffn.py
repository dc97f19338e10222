"""Static-scale FP8 FFN building blocks (spec gemm-quant.md §1).

Eight public functions over one FP8 GEMM kernel (``fp8_gemm.py``):

* ``fp8_gemm_bf16``                    ``bf16(sx*sw*acc)``
* ``fp8_linear_bias_bf16``             ``bf16(sx*sw*acc + b)`` (bias in the fp32 epilogue)
* ``fp8_linear_bias_gelu_quant_bf16``  pre-bias ``hidden = bf16(sx*sw*acc)`` and
                                       ``Q8(G(hidden + b), s_out)``, one launch
* ``fp8_gelu_mlp_bf16`` / ``_v2``      up GEMM + bias + GELU + FP8 requant (one launch),
                                       down GEMM + bias (v1: after a bf16 rounding;
                                       v2: in the fp32 epilogue)
* ``bf16_fp8_*``                       BF16 entry: quantize the input (zero pad rows
                                       up to ``pad_to``), then the FP8 path over P rows;
                                       return ``out[:M]``

Each is a thin wrapper (validate, allocate missing buffers, launch) over an
out-variant ``torch.library.custom_op``. Eager calls launch directly; under
torch.compile the op is traced. The fused epilogue always exists in this
implementation, so ``FLASHRT_FP8_FFN_REQUIRE_BIAS_EPILOGUE=1`` changes nothing.
"""

from typing import Optional, Tuple

import torch

from ._host import launch_directly
from ._ops import add_op_namespace_prefix
from .fp8_gemm import (BF16, EPI_BIAS, EPI_BIAS_ROUNDED, EPI_GELU_QUANT, FP8, check_bias,
                       check_input_fp8, check_linear, check_linear_out, check_matrix, check_out,
                       check_padded, check_scale, empty, launch_fp8_gemm, padded_rows,
                       same_device)

Tensor = torch.Tensor


# ----------------------------------------------------------------------------
# Shape checks shared by wrappers and fakes
# ----------------------------------------------------------------------------






def _check_mlp(input, input_dtype, up_weight, up_bias, down_weight, down_bias, scales):
    check_matrix(input, "input", input_dtype)
    check_matrix(up_weight, "up_weight", FP8)
    check_matrix(down_weight, "down_weight", FP8)
    check_bias(up_bias, "up_bias", up_weight.shape[0], "up_weight.shape[0]")
    check_bias(down_bias, "down_bias", down_weight.shape[0], "down_weight.shape[0]")
    for name, s in zip(("input_scale", "up_weight_scale", "hidden_scale", "down_weight_scale"),
                       scales):
        check_scale(s, name)
    if input.shape[1] != up_weight.shape[1]:
        raise RuntimeError(f"input.shape[1] must match up_weight.shape[1], got {input.shape[1]} "
                           f"and {up_weight.shape[1]}")
    if up_weight.shape[0] != down_weight.shape[1]:
        raise RuntimeError(f"up_weight.shape[0] must match down_weight.shape[1], got "
                           f"{up_weight.shape[0]} and {down_weight.shape[1]}")


def _check_mlp_outs(rows, up_weight, down_weight, hidden_bf16, hidden_fp8, out):
    H, N = up_weight.shape[0], down_weight.shape[0]
    check_out(hidden_bf16, "hidden_bf16", BF16, (rows, H),
              "hidden_bf16 must have shape (input.shape[0], up_weight.shape[0])")
    check_out(hidden_fp8, "hidden_fp8", FP8, tuple(hidden_bf16.shape),
              "hidden_fp8 must have the shape of hidden_bf16")
    check_out(out, "out", BF16, (rows, N),
              "out must have shape (input.shape[0], down_weight.shape[0])")




# ----------------------------------------------------------------------------
# Launches (one place each; the ops and the direct eager path both use them)
# ----------------------------------------------------------------------------




def _run_linear_bias(input, weight, bias, input_scale, weight_scale, out):
    launch_fp8_gemm(input, weight, input_scale, weight_scale, out, bias=bias, epi=EPI_BIAS)


def _run_gelu_quant(input, weight, bias, input_scale, weight_scale, output_scale, hidden_bf16,
                    out_fp8):
    launch_fp8_gemm(input, weight, input_scale, weight_scale, hidden_bf16, bias=bias,
                    so=output_scale, q=out_fp8, epi=EPI_GELU_QUANT)


def _run_mlp(input, up_weight, up_bias, down_weight, down_bias, sx, su, sh, sd, hidden_bf16,
             hidden_fp8, out, v2, x=None):
    """x: the BF16 input of a BF16 entry (``input`` is then its input_fp8 buffer)."""
    launch_fp8_gemm(input, up_weight, sx, su, hidden_bf16, bias=up_bias, so=sh, q=hidden_fp8,
                    epi=EPI_GELU_QUANT, x=x)
    launch_fp8_gemm(hidden_fp8, down_weight, sh, sd, out, bias=down_bias,
                    epi=EPI_BIAS if v2 else EPI_BIAS_ROUNDED)


def _run_bf16_linear(input, weight, bias, sx, sw, input_fp8, out):
    launch_fp8_gemm(input_fp8, weight, sx, sw, out, bias=bias, epi=EPI_BIAS, x=input)


def _run_bf16_mlp(input, up_weight, up_bias, down_weight, down_bias, sx, su, sh, sd, input_fp8,
                  hidden_bf16, hidden_fp8, out, v2):
    _run_mlp(input_fp8, up_weight, up_bias, down_weight, down_bias, sx, su, sh, sd, hidden_bf16,
             hidden_fp8, out, v2, x=input)


# ----------------------------------------------------------------------------
# Ops (out-variant, void) + fakes
# ----------------------------------------------------------------------------






@torch.library.custom_op(add_op_namespace_prefix("fp8_linear_bias_bf16"), mutates_args=("out",))
def _fp8_linear_bias_bf16_op(input: Tensor, weight: Tensor, bias: Tensor, input_scale: Tensor,
                             weight_scale: Tensor, out: Tensor) -> None:
    _run_linear_bias(input, weight, bias, input_scale, weight_scale, out)


@torch.library.register_fake(add_op_namespace_prefix("fp8_linear_bias_bf16"))
def _fp8_linear_bias_bf16_fake(input, weight, bias, input_scale, weight_scale, out):
    check_linear(input, FP8, weight, bias, input_scale, weight_scale)
    check_linear_out(out, input.shape[0], weight)


@torch.library.custom_op(add_op_namespace_prefix("fp8_linear_bias_gelu_quant_bf16"),
                         mutates_args=("hidden_bf16", "out_fp8"))
def _fp8_linear_bias_gelu_quant_bf16_op(input: Tensor, weight: Tensor, bias: Tensor,
                                        input_scale: Tensor, weight_scale: Tensor,
                                        output_scale: Tensor, hidden_bf16: Tensor,
                                        out_fp8: Tensor) -> None:
    _run_gelu_quant(input, weight, bias, input_scale, weight_scale, output_scale, hidden_bf16,
                    out_fp8)


@torch.library.register_fake(add_op_namespace_prefix("fp8_linear_bias_gelu_quant_bf16"))
def _fp8_linear_bias_gelu_quant_bf16_fake(input, weight, bias, input_scale, weight_scale,
                                          output_scale, hidden_bf16, out_fp8):
    check_linear(input, FP8, weight, bias, input_scale, weight_scale)
    check_scale(output_scale, "output_scale")
    _check_gelu_quant_outs(input, weight, hidden_bf16, out_fp8)


def _check_gelu_quant_outs(input, weight, hidden_bf16, out_fp8):
    shape = (input.shape[0], weight.shape[0])
    check_out(hidden_bf16, "hidden_bf16", BF16, shape,
              "hidden_bf16 must have shape (input.shape[0], weight.shape[0])")
    check_out(out_fp8, "out_fp8", FP8, shape,
              "out_fp8 must have shape (input.shape[0], weight.shape[0])")


def _mlp_op(name, v2):
    @torch.library.custom_op(add_op_namespace_prefix(name),
                             mutates_args=("hidden_bf16", "hidden_fp8", "out"))
    def op(input: Tensor, up_weight: Tensor, up_bias: Tensor, down_weight: Tensor,
           down_bias: Tensor, input_scale: Tensor, up_weight_scale: Tensor,
           hidden_scale: Tensor, down_weight_scale: Tensor, hidden_bf16: Tensor,
           hidden_fp8: Tensor, out: Tensor) -> None:
        _run_mlp(input, up_weight, up_bias, down_weight, down_bias, input_scale,
                 up_weight_scale, hidden_scale, down_weight_scale, hidden_bf16, hidden_fp8, out,
                 v2)

    @torch.library.register_fake(add_op_namespace_prefix(name))
    def fake(input, up_weight, up_bias, down_weight, down_bias, input_scale, up_weight_scale,
             hidden_scale, down_weight_scale, hidden_bf16, hidden_fp8, out):
        _check_mlp(input, FP8, up_weight, up_bias, down_weight, down_bias,
                   (input_scale, up_weight_scale, hidden_scale, down_weight_scale))
        _check_mlp_outs(input.shape[0], up_weight, down_weight, hidden_bf16, hidden_fp8, out)

    return op


_fp8_gelu_mlp_bf16_op = _mlp_op("fp8_gelu_mlp_bf16", v2=False)
_fp8_gelu_mlp_v2_bf16_op = _mlp_op("fp8_gelu_mlp_v2_bf16", v2=True)


@torch.library.custom_op(add_op_namespace_prefix("bf16_fp8_linear_bias_bf16"),
                         mutates_args=("input_fp8", "out"))
def _bf16_fp8_linear_bias_bf16_op(input: Tensor, weight: Tensor, bias: Tensor,
                                  input_scale: Tensor, weight_scale: Tensor, input_fp8: Tensor,
                                  out: Tensor) -> None:
    _run_bf16_linear(input, weight, bias, input_scale, weight_scale, input_fp8, out)


@torch.library.register_fake(add_op_namespace_prefix("bf16_fp8_linear_bias_bf16"))
def _bf16_fp8_linear_bias_bf16_fake(input, weight, bias, input_scale, weight_scale, input_fp8,
                                    out):
    check_linear(input, BF16, weight, bias, input_scale, weight_scale)
    P = input_fp8.shape[0]
    if P < input.shape[0]:
        raise RuntimeError("input_fp8 must have at least input.shape[0] rows")
    check_input_fp8(input_fp8, P, input.shape[1])
    check_linear_out(out, P, weight)


def _bf16_mlp_op(name, v2):
    @torch.library.custom_op(add_op_namespace_prefix(name),
                             mutates_args=("input_fp8", "hidden_bf16", "hidden_fp8", "out"))
    def op(input: Tensor, up_weight: Tensor, up_bias: Tensor, down_weight: Tensor,
           down_bias: Tensor, input_scale: Tensor, up_weight_scale: Tensor,
           hidden_scale: Tensor, down_weight_scale: Tensor, input_fp8: Tensor,
           hidden_bf16: Tensor, hidden_fp8: Tensor, out: Tensor) -> None:
        _run_bf16_mlp(input, up_weight, up_bias, down_weight, down_bias, input_scale,
                      up_weight_scale, hidden_scale, down_weight_scale, input_fp8, hidden_bf16,
                      hidden_fp8, out, v2)

    @torch.library.register_fake(add_op_namespace_prefix(name))
    def fake(input, up_weight, up_bias, down_weight, down_bias, input_scale, up_weight_scale,
             hidden_scale, down_weight_scale, input_fp8, hidden_bf16, hidden_fp8, out):
        _check_mlp(input, BF16, up_weight, up_bias, down_weight, down_bias,
                   (input_scale, up_weight_scale, hidden_scale, down_weight_scale))
        P = input_fp8.shape[0]
        if P < input.shape[0]:
            raise RuntimeError("input_fp8 must have at least input.shape[0] rows")
        check_input_fp8(input_fp8, P, input.shape[1])
        _check_mlp_outs(P, up_weight, down_weight, hidden_bf16, hidden_fp8, out)

    return op


_bf16_fp8_gelu_mlp_bf16_op = _bf16_mlp_op("bf16_fp8_gelu_mlp_bf16", v2=False)
_bf16_fp8_gelu_mlp_v2_bf16_op = _bf16_mlp_op("bf16_fp8_gelu_mlp_v2_bf16", v2=True)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------






def fp8_linear_bias_bf16(input: Tensor, weight: Tensor, bias: Tensor, input_scale: Tensor,
                         weight_scale: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """``out = bf16(sx * sw * acc + f32(bias))``: bias added in the fp32 epilogue."""
    check_linear(input, FP8, weight, bias, input_scale, weight_scale)
    out = empty(input, input.shape[0], weight.shape[0], BF16) if out is None else out
    check_linear_out(out, input.shape[0], weight)
    same_device(("input", input), ("weight", weight), ("bias", bias),
                ("input_scale", input_scale), ("weight_scale", weight_scale), ("out", out))
    run = _run_linear_bias if launch_directly(input) else _fp8_linear_bias_bf16_op
    run(input, weight, bias, input_scale, weight_scale, out)
    return out


def fp8_linear_bias_gelu_quant_bf16(
    input: Tensor, weight: Tensor, bias: Tensor, input_scale: Tensor, weight_scale: Tensor,
    output_scale: Tensor, hidden_bf16: Optional[Tensor] = None,
    out_fp8: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """``hidden_bf16 = bf16(sx*sw*acc)`` (pre-bias) and
    ``out_fp8 = Q8(GELU_tanh(f32(hidden) + f32(bias)), output_scale)``, one launch."""
    check_linear(input, FP8, weight, bias, input_scale, weight_scale)
    check_scale(output_scale, "output_scale")
    M, N = input.shape[0], weight.shape[0]
    hidden_bf16 = empty(input, M, N, BF16) if hidden_bf16 is None else hidden_bf16
    out_fp8 = empty(input, M, N, FP8) if out_fp8 is None else out_fp8
    _check_gelu_quant_outs(input, weight, hidden_bf16, out_fp8)
    same_device(("input", input), ("weight", weight), ("bias", bias),
                ("input_scale", input_scale), ("weight_scale", weight_scale),
                ("output_scale", output_scale), ("hidden_bf16", hidden_bf16),
                ("out_fp8", out_fp8))
    run = _run_gelu_quant if launch_directly(input) else _fp8_linear_bias_gelu_quant_bf16_op
    run(input, weight, bias, input_scale, weight_scale, output_scale, hidden_bf16, out_fp8)
    return hidden_bf16, out_fp8


def _mlp(input, up_weight, up_bias, down_weight, down_bias, scales, hidden_bf16, hidden_fp8,
         out, v2):
    _check_mlp(input, FP8, up_weight, up_bias, down_weight, down_bias, scales)
    M, H, N = input.shape[0], up_weight.shape[0], down_weight.shape[0]
    hidden_bf16 = empty(input, M, H, BF16) if hidden_bf16 is None else hidden_bf16
    hidden_fp8 = empty(input, M, H, FP8) if hidden_fp8 is None else hidden_fp8
    out = empty(input, M, N, BF16) if out is None else out
    _check_mlp_outs(M, up_weight, down_weight, hidden_bf16, hidden_fp8, out)
    same_device(("input", input), ("up_weight", up_weight), ("up_bias", up_bias),
                ("down_weight", down_weight), ("down_bias", down_bias),
                *zip(("input_scale", "up_weight_scale", "hidden_scale", "down_weight_scale"),
                     scales),
                ("hidden_bf16", hidden_bf16), ("hidden_fp8", hidden_fp8), ("out", out))
    args = (input, up_weight, up_bias, down_weight, down_bias, *scales, hidden_bf16, hidden_fp8,
            out)
    if launch_directly(input):
        _run_mlp(*args, v2)
    else:
        (_fp8_gelu_mlp_v2_bf16_op if v2 else _fp8_gelu_mlp_bf16_op)(*args)
    return out


def fp8_gelu_mlp_bf16(
    input: Tensor, up_weight: Tensor, up_bias: Tensor, down_weight: Tensor, down_bias: Tensor,
    input_scale: Tensor, up_weight_scale: Tensor, hidden_scale: Tensor,
    down_weight_scale: Tensor, hidden_bf16: Optional[Tensor] = None,
    hidden_fp8: Optional[Tensor] = None, out: Optional[Tensor] = None,
) -> Tensor:
    """FP8 ``Linear -> bias -> GELU(tanh) -> FP8 -> Linear -> bias`` (v1 tail).

    ``hidden_bf16 = bf16(sx*su*acc(X, U))`` (pre-bias),
    ``hidden_fp8 = Q8(G(f32(hidden_bf16) + f32(up_bias)), hidden_scale)``,
    ``out = bf16(f32(bf16(sh*sd*acc(hidden_fp8, D))) + f32(down_bias))``.
    """
    return _mlp(input, up_weight, up_bias, down_weight, down_bias,
                (input_scale, up_weight_scale, hidden_scale, down_weight_scale), hidden_bf16,
                hidden_fp8, out, v2=False)


def fp8_gelu_mlp_v2_bf16(
    input: Tensor, up_weight: Tensor, up_bias: Tensor, down_weight: Tensor, down_bias: Tensor,
    input_scale: Tensor, up_weight_scale: Tensor, hidden_scale: Tensor,
    down_weight_scale: Tensor, hidden_bf16: Optional[Tensor] = None,
    hidden_fp8: Optional[Tensor] = None, out: Optional[Tensor] = None,
) -> Tensor:
    """As ``fp8_gelu_mlp_bf16``, with the down bias inside the fp32 epilogue:
    ``out = bf16(sh*sd*acc(hidden_fp8, D) + f32(down_bias))`` (one rounding)."""
    return _mlp(input, up_weight, up_bias, down_weight, down_bias,
                (input_scale, up_weight_scale, hidden_scale, down_weight_scale), hidden_bf16,
                hidden_fp8, out, v2=True)


def bf16_fp8_linear_bias_bf16(
    input: Tensor, weight: Tensor, bias: Tensor, input_scale: Tensor, weight_scale: Tensor,
    input_fp8: Optional[Tensor] = None, out: Optional[Tensor] = None, *,
    pad_to: Optional[int] = None,
) -> Tensor:
    """BF16 entry of ``fp8_linear_bias_bf16``: ``input_fp8[:M] = Q8(input, input_scale)``,
    pad rows ``M <= m < P`` FP8 zero (their output rows become ``bf16(bias)``);
    returns ``out[:M]``, a view of the (P-row) ``out``."""
    check_linear(input, BF16, weight, bias, input_scale, weight_scale)
    M, K = input.shape
    P = padded_rows(input, pad_to, input_fp8)
    check_padded(P, (("input_fp8", input_fp8), ("out", out)))
    input_fp8 = empty(input, P, K, FP8) if input_fp8 is None else input_fp8
    out = empty(input, P, weight.shape[0], BF16) if out is None else out
    check_input_fp8(input_fp8, P, K)
    check_linear_out(out, P, weight)
    same_device(("input", input), ("weight", weight), ("bias", bias),
                ("input_scale", input_scale), ("weight_scale", weight_scale),
                ("input_fp8", input_fp8), ("out", out))
    run = _run_bf16_linear if launch_directly(input) else _bf16_fp8_linear_bias_bf16_op
    run(input, weight, bias, input_scale, weight_scale, input_fp8, out)
    return out[:M]


def _bf16_mlp(input, up_weight, up_bias, down_weight, down_bias, scales, input_fp8,
              hidden_bf16, hidden_fp8, out, pad_to, v2):
    _check_mlp(input, BF16, up_weight, up_bias, down_weight, down_bias, scales)
    M, K = input.shape
    H, N = up_weight.shape[0], down_weight.shape[0]
    P = padded_rows(input, pad_to, input_fp8)
    check_padded(P, (("input_fp8", input_fp8), ("hidden_bf16", hidden_bf16),
                     ("hidden_fp8", hidden_fp8), ("out", out)))
    input_fp8 = empty(input, P, K, FP8) if input_fp8 is None else input_fp8
    hidden_bf16 = empty(input, P, H, BF16) if hidden_bf16 is None else hidden_bf16
    hidden_fp8 = empty(input, P, H, FP8) if hidden_fp8 is None else hidden_fp8
    out = empty(input, P, N, BF16) if out is None else out
    check_input_fp8(input_fp8, P, K)
    _check_mlp_outs(P, up_weight, down_weight, hidden_bf16, hidden_fp8, out)
    same_device(("input", input), ("up_weight", up_weight), ("up_bias", up_bias),
                ("down_weight", down_weight), ("down_bias", down_bias),
                *zip(("input_scale", "up_weight_scale", "hidden_scale", "down_weight_scale"),
                     scales),
                ("input_fp8", input_fp8), ("hidden_bf16", hidden_bf16),
                ("hidden_fp8", hidden_fp8), ("out", out))
    args = (input, up_weight, up_bias, down_weight, down_bias, *scales, input_fp8, hidden_bf16,
            hidden_fp8, out)
    if launch_directly(input):
        _run_bf16_mlp(*args, v2)
    else:
        (_bf16_fp8_gelu_mlp_v2_bf16_op if v2 else _bf16_fp8_gelu_mlp_bf16_op)(*args)
    return out[:M]


def bf16_fp8_gelu_mlp_bf16(
    input: Tensor, up_weight: Tensor, up_bias: Tensor, down_weight: Tensor, down_bias: Tensor,
    input_scale: Tensor, up_weight_scale: Tensor, hidden_scale: Tensor,
    down_weight_scale: Tensor, input_fp8: Optional[Tensor] = None,
    hidden_bf16: Optional[Tensor] = None, hidden_fp8: Optional[Tensor] = None,
    out: Optional[Tensor] = None, *, pad_to: Optional[int] = None,
) -> Tensor:
    """BF16 entry of ``fp8_gelu_mlp_bf16`` over P padded rows; returns ``out[:M]``."""
    return _bf16_mlp(input, up_weight, up_bias, down_weight, down_bias,
                     (input_scale, up_weight_scale, hidden_scale, down_weight_scale), input_fp8,
                     hidden_bf16, hidden_fp8, out, pad_to, v2=False)


def bf16_fp8_gelu_mlp_v2_bf16(
    input: Tensor, up_weight: Tensor, up_bias: Tensor, down_weight: Tensor, down_bias: Tensor,
    input_scale: Tensor, up_weight_scale: Tensor, hidden_scale: Tensor,
    down_weight_scale: Tensor, input_fp8: Optional[Tensor] = None,
    hidden_bf16: Optional[Tensor] = None, hidden_fp8: Optional[Tensor] = None,
    out: Optional[Tensor] = None, *, pad_to: Optional[int] = None,
) -> Tensor:
    """BF16 entry of ``fp8_gelu_mlp_v2_bf16`` over P padded rows; returns ``out[:M]``."""
    return _bf16_mlp(input, up_weight, up_bias, down_weight, down_bias,
                     (input_scale, up_weight_scale, hidden_scale, down_weight_scale), input_fp8,
                     hidden_bf16, hidden_fp8, out, pad_to, v2=True)
