"""The math contract of flashrt-fp8-ffn in plain PyTorch (spec gemm-quant.md §0.2, §1).

Used by the tests, by `flashrt validate` and as the eager fake-quant baseline
of the benchmarks. GEMMs dequantize exactly: FP8 codes are widened and
multiplied in fp64, where every product and every partial sum of these sizes
is exact, then rounded to fp32 and scaled by ``sx * sw`` (fp32) like the
kernel's epilogue. BF16 / FP8 roundings sit exactly where the spec puts them.
"""

import torch

from .fp8_reference import dequant_gemm_fp32, fp8_gemm_bf16, gelu, quantize_fp8, quantize_input


def fp8_linear_bias_bf16(input, weight, bias, input_scale, weight_scale):
    y = dequant_gemm_fp32(input, weight, input_scale, weight_scale) + bias.float()
    return y.to(torch.bfloat16)


def fp8_linear_bias_gelu_quant_bf16(input, weight, bias, input_scale, weight_scale,
                                    output_scale):
    hidden = fp8_gemm_bf16(input, weight, input_scale, weight_scale)
    return hidden, quantize_fp8(gelu(hidden.float() + bias.float()), output_scale)


def gelu_mlp_parts(input, up_weight, up_bias, down_weight, down_bias, input_scale,
                   up_weight_scale, hidden_scale, down_weight_scale, v2=False):
    """(hidden_bf16, hidden_fp8, out) of the FP8 GELU MLP."""
    hidden, hq = fp8_linear_bias_gelu_quant_bf16(input, up_weight, up_bias, input_scale,
                                                 up_weight_scale, hidden_scale)
    y = dequant_gemm_fp32(hq, down_weight, hidden_scale, down_weight_scale)
    if not v2:
        y = y.to(torch.bfloat16).float()
    return hidden, hq, (y + down_bias.float()).to(torch.bfloat16)


def fp8_gelu_mlp_bf16(input, up_weight, up_bias, down_weight, down_bias, input_scale,
                      up_weight_scale, hidden_scale, down_weight_scale):
    return gelu_mlp_parts(input, up_weight, up_bias, down_weight, down_bias, input_scale,
                          up_weight_scale, hidden_scale, down_weight_scale)[2]


def fp8_gelu_mlp_v2_bf16(input, up_weight, up_bias, down_weight, down_bias, input_scale,
                         up_weight_scale, hidden_scale, down_weight_scale):
    return gelu_mlp_parts(input, up_weight, up_bias, down_weight, down_bias, input_scale,
                          up_weight_scale, hidden_scale, down_weight_scale, v2=True)[2]


def bf16_fp8_linear_bias_bf16(input, weight, bias, input_scale, weight_scale, *, pad_to=None):
    return fp8_linear_bias_bf16(quantize_input(input, input_scale), weight, bias, input_scale,
                                weight_scale)


def bf16_fp8_gelu_mlp_bf16(input, up_weight, up_bias, down_weight, down_bias, input_scale,
                           up_weight_scale, hidden_scale, down_weight_scale, *, pad_to=None):
    return fp8_gelu_mlp_bf16(quantize_input(input, input_scale), up_weight, up_bias,
                             down_weight, down_bias, input_scale, up_weight_scale,
                             hidden_scale, down_weight_scale)


def bf16_fp8_gelu_mlp_v2_bf16(input, up_weight, up_bias, down_weight, down_bias, input_scale,
                              up_weight_scale, hidden_scale, down_weight_scale, *, pad_to=None):
    return fp8_gelu_mlp_v2_bf16(quantize_input(input, input_scale), up_weight, up_bias,
                                down_weight, down_bias, input_scale, up_weight_scale,
                                hidden_scale, down_weight_scale)
