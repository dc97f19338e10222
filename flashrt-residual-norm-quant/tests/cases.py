"""Input builders and the accuracy sweep of flashrt-residual-norm-quant.

Shared by the tests, `flashrt validate` and the benchmark's correctness gate.
Data: random normal activations (never zeros), weights ``1 + 0.1·randn``,
LayerNorm bias ``0.1·randn``, FP8 scale 0.04 (not a power of two, as the spec's
tests use) as a 1-element fp32 device tensor.

Widths: 2 (smallest even), 130 / 1030 (just over a power of two), 1152 (SigLIP,
not a power of two), 8200 (wider than the register block: the chunked path),
model widths on the GPU. Rows: 1, odd, and more than one program's tile.
"""

import torch

from flashrt_tools.validation import Case, device_for_run

FP8_SCALE = 0.04


def _randn(shape, gen, device, dtype=torch.bfloat16, scale=1.0, shift=0.0):
    return (torch.randn(shape, generator=gen) * scale + shift).to(dtype=dtype, device=device)


def norm_inputs(rows, dim, device, gen, *, residual=False, quant=False, bias=False,
                scale=FP8_SCALE):
    """Keyword inputs of one function, in the spec's argument order."""
    kw = {}
    if residual:
        kw["residual"] = _randn((rows, dim), gen, device, scale=2.0)
    kw["x"] = _randn((rows, dim), gen, device, scale=2.0)
    kw["weight"] = _randn((dim,), gen, device, scale=0.1, shift=1.0)
    if bias:
        kw["bias"] = _randn((dim,), gen, device, scale=0.1)
    if quant:
        kw["scale"] = torch.tensor([scale], dtype=torch.float32, device=device)
    return kw


FUNCTIONS = {  # name -> (norm_inputs flags, output format)
    "rms_norm_bf16": ({}, "bf16"),
    "rms_norm_quant_fp8_static_bf16": ({"quant": True}, "fp8"),
    "residual_add_rms_norm_bf16": ({"residual": True}, "bf16"),
    "residual_add_rms_norm_quant_fp8_static_bf16": ({"residual": True, "quant": True}, "fp8"),
    "layer_norm_bf16": ({"bias": True}, "bf16"),
}




def _case(function, rows, dim):
    flags, fmt = FUNCTIONS[function]

    def make(device, gen):
        return (), norm_inputs(rows, dim, device, gen, **flags)

    # the residual variants update ``residual`` in place
    return Case(function, f"rows={rows},D={dim}", make, (fmt,),
                mutates=bool(flags.get("residual")))


def _sweep(on_gpu):
    shapes = [(1, 2), (3, 130), (5, 1030), (17, 64), (4, 1152), (2, 8200)]
    if on_gpu:
        shapes += [(10, 1024), (560, 2048), (512, 1152), (41, 1536), (1024, 2048),
                   (2520, 2048), (128, 2048), (16, 128), (333, 4096), (64, 8192),
                   (16, 16384), (7, 12290)]
    return [_case(f, rows, dim) for f in FUNCTIONS for rows, dim in shapes]


CASES = _sweep(on_gpu=device_for_run().type == "cuda")
