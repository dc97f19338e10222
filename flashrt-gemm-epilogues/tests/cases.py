"""Input builders and the accuracy sweep of flashrt-gemm-epilogues.

Shared by the tests, `flashrt validate` and the benchmark's correctness gate.
Data (never zeros): activations ``randn * 2`` in BF16, biases ``randn * 0.5``,
channel scales ``randn``, weights ``randn / sqrt(K)`` (unit-variance GEMM outputs).

Tolerances: quantizer outputs "fp8" (byte parity, at most 0.1% of codes one step
away: the kernel's tanh is ``1 - 2 / (exp(2u) + 1)``, PyTorch's is its own; an
fp32 value at an E4M3 rounding boundary may take the neighbour). With power-of-two
scales the spec demands exact parity; the tests check that separately. GEMM
outputs "gemm": p99 |got - ref| <= 2^-7 (one bf16 ulp at |y| in [1, 2), the outputs'
typical magnitude); the reference is the exact (fp64) product rounded once.
"""

import math

import torch

from flashrt_tools.validation import Case, device_for_run

FP8 = torch.float8_e4m3fn
BF16 = torch.bfloat16
GEMM_TOL = {"gemm": {"p99_abs": 2.0 ** -7}}


def _randn(shape, gen, device, scale=1.0, dtype=BF16):
    return (torch.randn(shape, generator=gen) * scale).to(dtype).to(device)


def quant_inputs(function, shape, device, gen, *, scale=None):
    """scale None: calibrated amax / (0.9 * 448) of the quantized value (not a power of two)."""
    x = _randn(shape, gen, device, 2.0)
    kw = {"input": x}
    if function.startswith("bias_gelu"):
        kw["bias"] = _randn(shape[-1], gen, device, 0.5)
    elif function.startswith("channel_scale"):
        kw["channel_scale"] = _randn(shape[-1], gen, device)
    if scale is None:
        v = x.float().abs().amax() * (4.0 if "channel" in function else 1.5)
        kw["scale"] = (v / (0.9 * 448)).reshape(1).float().to(device)
    else:
        kw["scale"] = torch.tensor([scale], dtype=torch.float32, device=device)
    return kw


def gemm_inputs(function, M, K, N, device, gen):
    names = ("x", "w") if "linear" in function else ("a", "b")
    kw = {names[0]: _randn((M, K), gen, device), names[1]: _randn((K, N), gen, device,
                                                                  1 / math.sqrt(K))}
    if "bias" in function:
        kw["bias"] = _randn(N, gen, device, 0.5)
    return kw


QUANT_FUNCS = ("bias_gelu_quantize_fp8_static_bf16", "gelu_quantize_fp8_static_bf16",
               "channel_scale_quantize_fp8_static_bf16")
GEMM_FUNCS = ("bf16_linear_bf16", "bf16_linear_bias_bf16", "bf16_gemm_bias",
              "bf16_gemm_bias_gelu")

# CPU: the spec's small shapes (4,16), (2,3,32), (8,64) + ragged (1-D, odd widths,
# a row count over one block); GEMMs (M, K, N) with M = 1 / odd / > 256 bucket,
# K tails past the K block, N not a tile multiple. The last two: M = 5 takes the
# swap kernel split in 4 over K = 2100 (a K tail) under the interpreter's 4 SMs, and
# M = 17, just past the decode rows, the swap kernel's 32-wide row side; M = 40 with 5
# column tiles (more than the interpreter's 4 SMs) the tile kernel.
CPU_QUANT = [(4, 16), (2, 3, 32), (8, 64), (37,), (5, 7, 129), (33, 1000)]
CPU_GEMM = [(1, 32, 16), (16, 32, 64), (32, 64, 128), (7, 100, 40), (33, 72, 24),
            (300, 64, 48), (5, 2100, 40), (17, 520, 72), (40, 64, 300)]
# GPU: spec §3.1 grids.
GPU_QUANT = [(m, 4096) for m in (1, 2, 4, 8, 16, 32, 64, 128, 256)] + \
    [(16, 8192), (128, 8192), (16, 12288), (64, 12288), (16, 16384), (64, 16384)]
GPU_GEMM = [(10, 32, 1024), (10, 1024, 2560), (10, 2048, 1024), (10, 1024, 32),
            (1, 1024, 1024), (8, 1024, 2560), (16, 1024, 1024), (512, 1152, 1152),
            (512, 1152, 4304), (1024, 2048, 2048), (1024, 2048, 8192), (64, 4096, 4096),
            (16, 4096, 8192)]


def _sweep(on_gpu):
    cases = []
    for shape in CPU_QUANT + (GPU_QUANT if on_gpu else []):
        for fn in QUANT_FUNCS:
            for scale in (0.25, None):
                cases.append(Case(fn, "x".join(map(str, shape)) + f",scale={scale or 'calib'}",
                                  lambda d, g, fn=fn, shape=shape, scale=scale:
                                  ((), quant_inputs(fn, shape, d, g, scale=scale)), ("fp8",)))
    for M, K, N in CPU_GEMM + (GPU_GEMM if on_gpu else []):
        for fn in GEMM_FUNCS:
            cases.append(Case(fn, f"M={M},K={K},N={N}",
                              lambda d, g, fn=fn, M=M, K=K, N=N:
                              ((), gemm_inputs(fn, M, K, N, d, g)), ("gemm",), GEMM_TOL))
    return cases


CASES = _sweep(on_gpu=device_for_run().type == "cuda")
