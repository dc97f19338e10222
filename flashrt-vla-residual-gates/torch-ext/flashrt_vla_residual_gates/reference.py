"""The math contract of flashrt-vla-residual-gates in plain PyTorch (fp32 inside).

Used by the tests, by `flashrt validate` and as the eager baseline of the
benchmarks. Each elementwise op is its own eager PyTorch op (every product and
sum rounded to fp32, no FMA), one bf16 rounding at the end: the kernels match
these bit for bit.
"""

import torch


def _bf16(t):
    return t.to(torch.bfloat16)


def gate_residual_bf16(residual, x, gate):
    return _bf16(residual.float() + x.float() * gate.float())


def bias_residual_bf16(residual, x, bias):
    return _bf16((residual.float() + x.float()) + bias.float())


def bias_gate(residual, x, bias, gate_fp32):
    return _bf16(residual.float() + (x.float() + bias.float()) * gate_fp32)


def dequant_gate(gate_fp8, scale):
    return gate_fp8.float() * scale.float()


def _u(residual, x):
    return _bf16(residual.float() + x.float())


def joint3_bias_gate_residual_bf16(v_residual, v_x, v_bias, v_gate, a_residual, a_x, a_bias,
                                   a_gate, u_residual, u_x):
    return (bias_gate(v_residual, v_x, v_bias, v_gate.float()),
            bias_gate(a_residual, a_x, a_bias, a_gate.float()), _u(u_residual, u_x))


def joint3_bias_gate_residual_action_nobias_bf16(v_residual, v_x, v_bias, v_gate, a_residual,
                                                 a_x, a_gate, u_residual, u_x):
    return (bias_gate(v_residual, v_x, v_bias, v_gate.float()),
            gate_residual_bf16(a_residual, a_x, a_gate), _u(u_residual, u_x))


def joint3_bias_fp8_gate_residual_bf16(v_residual, v_x, v_bias, v_gate_fp8, v_gate_scale,
                                       a_residual, a_x, a_bias, a_gate, u_residual, u_x):
    return (bias_gate(v_residual, v_x, v_bias, dequant_gate(v_gate_fp8, v_gate_scale)),
            bias_gate(a_residual, a_x, a_bias, a_gate.float()), _u(u_residual, u_x))


def joint3_bias_fp8_gate_residual_action_nobias_bf16(v_residual, v_x, v_bias, v_gate_fp8,
                                                     v_gate_scale, a_residual, a_x, a_gate,
                                                     u_residual, u_x):
    return (bias_gate(v_residual, v_x, v_bias, dequant_gate(v_gate_fp8, v_gate_scale)),
            gate_residual_bf16(a_residual, a_x, a_gate), _u(u_residual, u_x))
