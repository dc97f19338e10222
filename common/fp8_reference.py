"""Reference math shared by the FP8 packages' reference.py (spec gemm-quant.md §0.2).

Plain PyTorch, fp32 inside. ``Q8`` is the static FP8 E4M3 quantizer; GEMMs
dequantize exactly: FP8 codes are widened and multiplied in fp64, where every
product and every partial sum of these sizes is exact, then rounded to fp32 and
scaled by ``sx * sw`` (fp32) like the kernels' epilogue.

One source of truth: common/fp8_reference.py, copied by `flashrt sync` into
flashrt-fp8-ffn, flashrt-fp8-swiglu-ffn and flashrt-gemm-epilogues.
"""

import torch
import torch.nn.functional as F

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


def quantize_fp8(v, scale):
    """Q8(v, s): t = v * fp32(1/s), clamp to +-448 (NaN -> -448, as fminf/fmaxf), RNE."""
    r = 1.0 / scale.float().reshape(())
    t = v.float() * r
    t = torch.where(torch.isnan(t), torch.full_like(t, -FP8_MAX), t.clamp(-FP8_MAX, FP8_MAX))
    return t.to(FP8)


def gelu(x):
    return F.gelu(x.float(), approximate="tanh")


def dequant_gemm_fp32(a, w, sa, sw):
    """fp32(exact A @ W^T) * (sa * sw): the pre-rounding GEMM result."""
    acc = (a.double() @ w.double().t()).float()
    return acc * (sa.float().reshape(()) * sw.float().reshape(()))


def fp8_gemm_bf16(input, weight, input_scale, weight_scale):
    return dequant_gemm_fp32(input, weight, input_scale, weight_scale).to(torch.bfloat16)


def quantize_input(input, input_scale, pad_to=None):
    """input_fp8 of the BF16 entries: Q8 rows < M, FP8 zero rows M..P-1."""
    M, K = input.shape
    P = M if pad_to is None else pad_to
    q = torch.zeros((P, K), dtype=FP8, device=input.device)
    q[:M] = quantize_fp8(input.float(), input_scale)
    return q
