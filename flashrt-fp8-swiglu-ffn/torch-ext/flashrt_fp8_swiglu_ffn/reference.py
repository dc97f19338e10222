"""The math contract of flashrt-fp8-swiglu-ffn in plain PyTorch (spec gemm-quant.md §0.2, §2).

Used by the tests, by `flashrt validate` and as the eager fake-quant baseline
of the benchmarks. GEMMs dequantize exactly (FP8 codes multiplied and summed in
fp64, exact at these sizes, rounded to fp32, times ``sx * sw`` in fp32); BF16 /
FP8 roundings sit where the spec puts them.
"""

import torch

from .fp8_reference import fp8_gemm_bf16, gelu, quantize_fp8, quantize_input


def silu(x):
    x = x.float()
    return x / (1.0 + torch.exp(-x))


def _act_mul_quantize(gate_up_bf16, output_scale, act):
    H = gate_up_bf16.shape[1] // 2
    g, u = gate_up_bf16[:, :H].float(), gate_up_bf16[:, H:].float()
    return quantize_fp8(act(g) * u, output_scale)


def silu_mul_merged_quantize_fp8_static_bf16(gate_up_bf16, output_scale):
    return _act_mul_quantize(gate_up_bf16, output_scale, silu)


def gelu_mul_merged_quantize_fp8_static_bf16(gate_up_bf16, output_scale):
    return _act_mul_quantize(gate_up_bf16, output_scale, gelu)


def gated_mlp_parts(input, gate_up_weight, down_weight, input_scale, gate_up_weight_scale,
                    hidden_scale, down_weight_scale, activation="silu"):
    """(gate_up_bf16, hidden_fp8, out) of the FP8 gated MLP."""
    gu = fp8_gemm_bf16(input, gate_up_weight, input_scale, gate_up_weight_scale)
    hq = _act_mul_quantize(gu, hidden_scale, silu if activation == "silu" else gelu)
    return gu, hq, fp8_gemm_bf16(hq, down_weight, hidden_scale, down_weight_scale)


def fp8_swiglu_mlp_bf16(input, gate_up_weight, down_weight, input_scale, gate_up_weight_scale,
                        hidden_scale, down_weight_scale):
    return gated_mlp_parts(input, gate_up_weight, down_weight, input_scale,
                           gate_up_weight_scale, hidden_scale, down_weight_scale, "silu")[2]


def fp8_geglu_mlp_bf16(input, gate_up_weight, down_weight, input_scale, gate_up_weight_scale,
                       hidden_scale, down_weight_scale):
    return gated_mlp_parts(input, gate_up_weight, down_weight, input_scale,
                           gate_up_weight_scale, hidden_scale, down_weight_scale, "gelu")[2]


def bf16_fp8_swiglu_mlp_bf16(input, gate_up_weight, down_weight, input_scale,
                             gate_up_weight_scale, hidden_scale, down_weight_scale, *,
                             pad_to=None):
    return fp8_swiglu_mlp_bf16(quantize_input(input, input_scale), gate_up_weight, down_weight,
                               input_scale, gate_up_weight_scale, hidden_scale,
                               down_weight_scale)


def bf16_fp8_geglu_mlp_bf16(input, gate_up_weight, down_weight, input_scale,
                            gate_up_weight_scale, hidden_scale, down_weight_scale, *,
                            pad_to=None):
    return fp8_geglu_mlp_bf16(quantize_input(input, input_scale), gate_up_weight, down_weight,
                              input_scale, gate_up_weight_scale, hidden_scale, down_weight_scale)
