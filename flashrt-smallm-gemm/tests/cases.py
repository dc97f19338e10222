"""Input builders and the accuracy sweep of flashrt-smallm-gemm.

GEMM outputs are compared with the `gemm` comparator against a reference that
dequantizes the exact packed tensors and accumulates in float64: the kernel's
block products are exact in fp32, so only fp32 summation order and the final
bf16 rounding differ. p99_abs is one bf16 ulp at the expected output RMS
(computed from the data distribution below), relative RMS <= 1e-3 (bf16 half
ulp is 2^-9 = 2e-3 per element), cosine >= 0.99999. The weight quantizer is
byte-exact. Random packed bytes (all 16 codes, both signs); scale bytes in
[0x30, 0x40) (0.5 .. 1.875).
"""

import math

import torch

from flashrt_tools.validation import Case, device_for_run

E2M1_MEAN_SQ = 68.5 / 8  # mean of squared E2M1 values over the 16 codes
SCALE_MEAN_SQ = 1.4  # mean square of UE4M3 0x30..0x3F (0.5 .. 1.875), rounded up


def swizzle(lin):
    rows, nb = lin.shape
    r = torch.arange(rows)[:, None]
    c = torch.arange(nb)[None, :]
    off = ((r // 128) * ((nb + 3) // 4) + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4
    out = torch.zeros(-(-rows // 128) * -(-nb // 4) * 512, dtype=torch.uint8)
    out[off.flatten()] = lin.flatten()
    return out


def fp4_operand(rows, K, gen, device):
    packed = torch.randint(0, 256, (rows, K // 2), generator=gen, dtype=torch.uint8)
    lin = torch.randint(0x30, 0x40, (rows, K // 16), generator=gen, dtype=torch.uint8)
    return packed.to(device), swizzle(lin).to(device)


def matvec_inputs(M, N, K, device, gen, alpha=0.25, one_d=False):
    a, sfa = fp4_operand(M, K, gen, device)
    b, sfb = fp4_operand(N, K, gen, device)
    return (a.reshape(K // 2) if one_d else a, b, sfa, sfb), {"alpha": alpha}


def linear_inputs(M, N, K, device, gen, alpha=0.5, bias=True, lead=None):
    b, sfb = fp4_operand(N, K, gen, device)
    x = torch.randn((lead or (M,)) + (K,), generator=gen).to(torch.bfloat16).to(device)
    kw = {"alpha": alpha}
    if bias:
        kw["bias"] = torch.randn(N, generator=gen).to(torch.bfloat16).to(device)
    return (x, b, sfb), kw


def gemm_tolerance(K, alpha, act_mean_sq):
    rms = abs(alpha) * math.sqrt(K * act_mean_sq * E2M1_MEAN_SQ * SCALE_MEAN_SQ)
    return {"gemm": {"p99_abs": rms * 2.0 ** -7, "min_cosine": 0.99999, "max_rel_rms": 1e-3}}


def _matvec_case(M, N, K, one_d=False):
    def make(device, gen):
        return matvec_inputs(M, N, K, device, gen, one_d=one_d)

    tol = gemm_tolerance(K, 0.25, E2M1_MEAN_SQ * SCALE_MEAN_SQ)
    return Case("nvfp4_w4a4_decode_matvec_bf16out", f"M={M},N={N},K={K}" + ",1-D" * one_d,
                make, ("gemm",), tol)


def _linear_case(M, N, K, lead=None, bias=True):
    def make(device, gen):
        return linear_inputs(M, N, K, device, gen, bias=bias, lead=lead)

    label = f"M={M},N={N},K={K}" + (f",x={lead + (K,)}" if lead else "") + ",bias" * bias
    return Case("nvfp4_weight_only_linear_bf16", label, make, ("gemm",),
                gemm_tolerance(K, 0.5, 1.0))


def weight_inputs(N, K, device, gen, std=0.02):
    w = (torch.randn(N, K, generator=gen) * std).to(torch.bfloat16)
    gs = 1440.0 / w.float().abs().max().item()  # 6 x 240: block scales stay below the > 240 jump
    return (w.to(device),), {"global_scale": gs}


def _quant_case(N, K, raw=False):
    def make(device, gen):
        args, kw = weight_inputs(N, K, device, gen)
        return args, ({} if raw else kw)

    return Case("nvfp4_quantize_weight_bf16", f"N={N},K={K}" + ",global_scale=1" * raw, make,
                ("exact", "exact"))


def _sweep(on_gpu):
    cases = [_matvec_case(1, 16, 4096, one_d=True), _matvec_case(1, 33, 256),
             _matvec_case(3, 40, 512), _matvec_case(17, 70, 160), _matvec_case(64, 20, 48),
             _linear_case(1, 40, 256), _linear_case(5, 33, 512, bias=False),
             _linear_case(20, 130, 96), _linear_case(6, 24, 64, lead=(2, 3)),
             _quant_case(1, 16), _quant_case(33, 80), _quant_case(129, 48),
             _quant_case(31, 64, raw=True)]
    if on_gpu:
        for M in (1, 4, 10, 16, 64):
            for N, K in ((1024, 4096), (4096, 4096), (12288, 4096), (1024, 12288), (8192, 1024),
                         (16384, 2048), (2048, 16384)):
                cases.append(_matvec_case(M, N, K))
                cases.append(_linear_case(M, N, K))
        cases += [_linear_case(256, 4096, 4096), _linear_case(333, 2048, 1024)]
        cases += [_quant_case(4096, 4096), _quant_case(16384, 2048), _quant_case(1000, 12288)]
    return cases


CASES = _sweep(on_gpu=device_for_run().type == "cuda")
