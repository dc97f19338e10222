"""Kernelize layers (forward only) for transformers / torch models.

* ``RMSNorm``: drop-in forward for Llama / Qwen2 / Mistral-style RMSNorm hosts
  (``LlamaRMSNorm``, ``Qwen2RMSNorm``: ``self.weight``, ``self.variance_epsilon``;
  ``weight · x̂`` form, the weight used as is). Runs ``rms_norm_bf16``.
* ``LayerNorm``: drop-in forward for ``torch.nn.LayerNorm`` hosts (``self.weight``,
  ``self.bias``, ``self.eps``, ``self.normalized_shape``). Runs ``layer_norm_bf16``.

Any leading shape: the input is flattened to (rows, hidden) and the output
reshaped back. Inference only (the ops have no autograd formula): ``has_backward``
is False, so ``kernelize(mode=Mode.TRAINING)`` keeps the host's forward.

Dtype policy: the kernels take bf16 activations and bf16 weights. Any other case
(an fp32 or fp16 model, an fp32 weight under autocast, an odd hidden size, an
empty input, a device the kernels cannot run on) falls back to the host's own
PyTorch math, so a kernelized model never fails where the original ran.

Rounding: the kernels round once, ``bf16(x · r · w)``; transformers' RMSNorm rounds
``x · r`` to bf16 before multiplying by the weight. Outputs may differ by one bf16
ulp; the kernel's value is the more accurate one.
"""

import torch
from torch import nn

from ._host import interpreting
from .norms import layer_norm_bf16, rms_norm_bf16


def _kernel_can_run(x, weight, dim):
    return (x.dtype == torch.bfloat16 and weight is not None and weight.dtype == torch.bfloat16
            and x.numel() > 0 and dim % 2 == 0 and weight.shape == (dim,)
            and weight.device == x.device and (x.device.type == "cuda" or interpreting()))


class RMSNorm(nn.Module):
    """``weight · x · rsqrt(mean(x²) + variance_epsilon)`` over the last dimension."""

    can_torch_compile = True
    has_backward = False

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        dim = hidden_states.shape[-1]
        if not _kernel_can_run(hidden_states, self.weight, dim):
            # the transformers (Llama/Qwen2) formula, for dtypes the kernel does not take
            dtype = hidden_states.dtype
            h = hidden_states.to(torch.float32)
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
            return self.weight * h.to(dtype)
        x = hidden_states.reshape(-1, dim).contiguous()
        out = rms_norm_bf16(x, self.weight, self.variance_epsilon)
        return out.view(hidden_states.shape)


class LayerNorm(nn.Module):
    """``torch.nn.LayerNorm`` over the last dimension (affine weight and bias)."""

    can_torch_compile = True
    has_backward = False

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        dim = input.shape[-1]
        if (len(self.normalized_shape) != 1 or self.bias is None
                or self.bias.dtype != torch.bfloat16 or self.bias.device != input.device
                or not _kernel_can_run(input, self.weight, dim)):
            return nn.functional.layer_norm(input, self.normalized_shape, self.weight,
                                            self.bias, self.eps)
        x = input.reshape(-1, dim).contiguous()
        out = layer_norm_bf16(x, self.weight, self.bias, self.eps)
        return out.view(input.shape)
