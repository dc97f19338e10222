"""Input builders and the accuracy sweep of flashrt-fp8-ffn.

Shared by the tests, `flashrt validate` and the benchmark's correctness gate.
Data (never zeros): FP8 activations/weights are random normal codes spread over
the E4M3 range, with scales chosen so every real value is O(1) like a
calibrated model (x ~ N(0, 1), W ~ N(0, 1/K), outputs of unit variance); BF16
entries take ``randn`` activations with a calibrated scale ``amax / (0.9*448)``
(not a power of two: the quantizer multiplies by fp32(1/s), as the spec says).

Tolerance of GEMM outputs (format "gemm"): p99 |got - ref| <= 2^-7, one bf16
ulp at |y| in [1, 2), the outputs' typical magnitude. The reference sums the
exact FP8 products in fp64; the kernel accumulates in fp32, so a result near a
bf16 rounding boundary may round to the neighbour (one ulp), rarely (p99 is 0
in practice). FP8 outputs (format "fp8"): byte parity, at most 0.1% codes one
step away (tanh evaluated differently, FMA contraction), judged against the
reference epilogue applied to the kernel's own hidden (see _gelu_quant_expected).
"""

import functools
import math

import torch

from flashrt_tools.validation import Case, device_for_run

FP8 = torch.float8_e4m3fn
BF16 = torch.bfloat16
GEMM_TOL = {"gemm": {"p99_abs": 2.0 ** -7}}
X_SPREAD, W_SPREAD = 16.0, 32.0  # code spreads: x codes ~ N(0, 16^2), weight codes ~ N(0, 32^2)
HIDDEN_SCALE = 1.0 / 64  # GELU outputs up to ~7 fit well inside +-448 codes


def _scale(v, device):
    return torch.tensor([v], dtype=torch.float32, device=device)


def fp8_codes(shape, gen, device, spread):
    return (torch.randn(shape, generator=gen) * spread).clamp(-448, 448).to(FP8).to(device)


def fp8_weight(rows, k, gen, device):
    """(codes [rows, k], dequant scale) with real weights ~ N(0, 1/k)."""
    return fp8_codes((rows, k), gen, device, W_SPREAD), _scale(1.0 / (W_SPREAD * math.sqrt(k)),
                                                                device)


def bias(n, gen, device, spread=0.1):
    return (torch.randn(n, generator=gen) * spread).to(BF16).to(device)


def calibrated_scale(x):
    return (x.float().abs().amax() / (0.9 * 448)).clamp_min(1e-6).reshape(1)


def activation(M, K, gen, device, bf16_entry):
    """(input, input_scale): FP8 codes with scale 1/16, or BF16 randn + calibrated scale."""
    if bf16_entry:
        x = torch.randn((M, K), generator=gen).to(BF16).to(device)
        return x, calibrated_scale(x).to(device)
    return fp8_codes((M, K), gen, device, X_SPREAD), _scale(1.0 / X_SPREAD, device)


def linear_inputs(M, K, N, device, gen, *, bf16_entry=False, with_bias=True):
    x, sx = activation(M, K, gen, device, bf16_entry)
    w, sw = fp8_weight(N, K, gen, device)
    kw = {"input": x, "weight": w, "input_scale": sx, "weight_scale": sw}
    if with_bias:
        kw["bias"] = bias(N, gen, device)
    return kw


def mlp_inputs(M, K, H, N, device, gen, *, bf16_entry=False):
    x, sx = activation(M, K, gen, device, bf16_entry)
    up, su = fp8_weight(H, K, gen, device)
    down, sd = fp8_weight(N, H, gen, device)
    return {"input": x, "up_weight": up, "up_bias": bias(H, gen, device), "down_weight": down,
            "down_bias": bias(N, gen, device), "input_scale": sx, "up_weight_scale": su,
            "hidden_scale": _scale(HIDDEN_SCALE, device), "down_weight_scale": sd}


def _linear_case(function, M, K, N, *, bf16_entry=False, with_bias=True, pad_to=None,
                 gelu_quant=False, label=""):
    def make(device, gen):
        kw = linear_inputs(M, K, N, device, gen, bf16_entry=bf16_entry, with_bias=with_bias)
        if gelu_quant:
            kw["output_scale"] = _scale(HIDDEN_SCALE, device)
        if pad_to is not None:
            kw["pad_to"] = pad_to
        return (), kw

    formats = ("gemm", "fp8") if gelu_quant else ("gemm",)
    text = label or f"M={M},K={K},N={N}" + (f",pad_to={pad_to}" if pad_to else "")
    return Case(function, text, make, formats, GEMM_TOL,
                expected=_gelu_quant_expected if gelu_quant else None)


def _gelu_quant_expected(reference, got, args, kwargs):
    """hidden vs the reference GEMM; hidden_fp8 vs the reference epilogue applied to
    *our* hidden. A hidden one bf16 ulp off (fp32 vs exact accumulation) moves
    GELU(h + b) by up to several FP8 steps where ``h + b`` cancels, so judging the FP8
    output against the reference's own hidden would test the GEMM twice and the
    epilogue not at all; the GEMM is judged by the first output."""
    hidden = reference.fp8_gemm_bf16(kwargs["input"], kwargs["weight"], kwargs["input_scale"],
                                     kwargs["weight_scale"])
    epilogue = reference.gelu(got[0].float() + kwargs["bias"].float())
    return hidden, reference.quantize_fp8(epilogue, kwargs["output_scale"])


def _mlp_case(function, M, K, H, N, *, bf16_entry=False, pad_to=None, label=""):
    def make(device, gen):
        kw = mlp_inputs(M, K, H, N, device, gen, bf16_entry=bf16_entry)
        if pad_to is not None:
            kw["pad_to"] = pad_to
        kw["hidden_fp8"] = torch.empty((pad_to or M, H), dtype=FP8, device=device)
        return (), kw

    text = label or f"M={M},K={K},H={H},N={N}" + (f",pad_to={pad_to}" if pad_to else "")
    return Case(function, text, make, ("gemm",), GEMM_TOL,
                expected=functools.partial(_mlp_expected, v2="_v2_" in function))


def _mlp_expected(reference, got, args, kwargs, *, v2):
    """out vs the reference down GEMM + bias tail on the kernel's own hidden_fp8.

    A hidden value one bf16 ulp off (fp32 vs exact accumulation) can move its FP8
    code one step (several where h + b cancels), and one step moves every output of
    the row by up to ~1e-2: judging ``out`` against the reference's own chain would
    grade summation order, not the kernel. Every stage is still held to the
    reference: the up GEMM + GELU-quant by their own cases, fused == staged bit for
    bit by test_fused_equals_staged."""
    M = got[0].shape[0]
    y = reference.dequant_gemm_fp32(kwargs["hidden_fp8"][:M], kwargs["down_weight"],
                                    kwargs["hidden_scale"], kwargs["down_weight_scale"])
    if not v2:
        y = y.to(torch.bfloat16).float()
    return (y + kwargs["down_bias"].float()).to(torch.bfloat16)


# Ragged on CPU: M = 1 / odd / just over a 16-row block / the > 256 bucket (128-row
# tiles); K not a multiple of the 128-wide K block (tail), one K not a multiple of 16;
# N not a multiple of the column tile.
# The last two of each list reach the split-K swap kernel (few column tiles, K >= 512;
# the interpreter counts 4 SMs): 4 splits with a K tail, 2 splits at M = 40.
CPU_LINEAR = [(1, 32, 16), (7, 96, 40), (17, 200, 72), (33, 50, 24), (64, 128, 128),
              (300, 64, 40), (5, 1000, 40), (40, 640, 56)]
CPU_MLP = [(1, 32, 64, 48), (7, 96, 80, 40), (33, 64, 136, 72), (20, 50, 30, 24),
           (3, 512, 1024, 48)]

# GPU: model shapes of spec §1.1 (M, K, N) / (M, K, H, N).
GPU_LINEAR = [(1, 2048, 2048), (8, 1536, 1536), (51, 1536, 4608), (51, 1536, 1536),
              (64, 2048, 2048), (105, 2048, 4096), (105, 2048, 2048), (128, 1152, 3456),
              (256, 1536, 1536), (512, 2048, 2048), (1000, 1000, 999)]
GPU_MLP = {
    "pi05_decoder": [(m, 1024, 4096, 1024) for m in (1, 8, 10, 16)],
    "siglip": [(m, 1152, 4304, 1152) for m in (256, 512, 768)],
    "groot_vit": [(256, 1024, 4096, 1024)],
    "groot_deepstack": [(128, 4096, 4096, 2048)],
    "groot_vl": [(512, 2048, 8192, 2048)],
    "groot_dit": [(41, 1536, 6144, 1536)],
    "mid_m": [(m, 1152, 4304, 1152) for m in (8, 51, 64, 105, 128)],
}


def _sweep(on_gpu):
    linear = CPU_LINEAR + (GPU_LINEAR if on_gpu else [])
    mlps = CPU_MLP + ([s for v in GPU_MLP.values() for s in v] if on_gpu else [])
    cases = []
    for M, K, N in linear:
        cases += [
            _linear_case("fp8_gemm_bf16", M, K, N, with_bias=False),
            _linear_case("fp8_linear_bias_bf16", M, K, N),
            _linear_case("fp8_linear_bias_gelu_quant_bf16", M, K, N, gelu_quant=True),
            _linear_case("bf16_fp8_linear_bias_bf16", M, K, N, bf16_entry=True),
        ]
    cases.append(_linear_case("bf16_fp8_linear_bias_bf16", 9, 64, 40, bf16_entry=True,
                              pad_to=64))
    for M, K, H, N in mlps:
        for fn in ("fp8_gelu_mlp_bf16", "fp8_gelu_mlp_v2_bf16"):
            cases.append(_mlp_case(fn, M, K, H, N))
            cases.append(_mlp_case("bf16_" + fn, M, K, H, N, bf16_entry=True))
    for fn in ("bf16_fp8_gelu_mlp_bf16", "bf16_fp8_gelu_mlp_v2_bf16"):
        cases.append(_mlp_case(fn, 9, 64, 48, 40, bf16_entry=True, pad_to=64))
    return cases


CASES = _sweep(on_gpu=device_for_run().type == "cuda")
