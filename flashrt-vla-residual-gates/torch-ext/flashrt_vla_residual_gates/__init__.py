"""flashrt-vla-residual-gates: post-attention / post-MLP residual glue for VLA and video blocks.

Bias, gate (bf16 or static FP8) and residual add for up to three token groups
(video / action / und, each with its own rows and width) in one launch, plus
single-segment helpers; bit-exact with the fp32 eager PyTorch formulas. Triton
kernels; CUDA, or CPU through the Triton interpreter.
"""

from .gates import (bias_residual_bf16, gate_residual_bf16, joint3_bias_fp8_gate_residual_action_nobias_bf16,
                    joint3_bias_fp8_gate_residual_bf16, joint3_bias_gate_residual_action_nobias_bf16,
                    joint3_bias_gate_residual_bf16)

__all__ = [
    "bias_residual_bf16", "gate_residual_bf16", "joint3_bias_fp8_gate_residual_action_nobias_bf16",
    "joint3_bias_fp8_gate_residual_bf16", "joint3_bias_gate_residual_action_nobias_bf16",
    "joint3_bias_gate_residual_bf16",
]
