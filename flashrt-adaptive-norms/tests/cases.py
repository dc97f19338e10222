"""Input builders and the accuracy sweep of flashrt-adaptive-norms.

Shared by the tests, `flashrt validate` and the benchmark's correctness gate.
Data as the spec's tests: activations ``randn`` (never zeros), weight
``1 + 0.1·randn``, style ``0.05·randn`` (per row and broadcast (1, 3·D)),
previous-gate ``0.5·randn``, FP8 scale 0.04 as a 1-element fp32 device tensor.

Widths: 2, 130 (just over a power of two), 1030, 3072 (Wan; 4096 block, masked
tail), 8200 (chunked path); rows 1, odd, several per program.
"""

import torch

from flashrt_tools.validation import Case, device_for_run

FP8_SCALE = 0.04


def _randn(shape, gen, device, dtype=torch.bfloat16, scale=1.0, shift=0.0):
    return (torch.randn(shape, generator=gen) * scale + shift).to(dtype=dtype, device=device)


def ada_inputs(rows, dim, device, gen, *, broadcast=False, fused=False, scale=FP8_SCALE):
    """Keyword inputs in the spec's argument order."""
    kw = {}
    if fused:
        kw["residual"] = _randn((rows, dim), gen, device, scale=2.0)
    kw["x"] = _randn((rows, dim), gen, device, scale=2.0)
    if fused:
        kw["gate"] = _randn((rows, dim), gen, device, scale=0.5)
    kw["weight"] = _randn((dim,), gen, device, scale=0.1, shift=1.0)
    kw["style"] = _randn((1 if broadcast else rows, 3 * dim), gen, device, scale=0.05)
    if fused:
        kw["scale"] = torch.tensor([scale], dtype=torch.float32, device=device)
    return kw


FUNCTIONS = {  # name -> (ada_inputs flags, output formats)
    "ada_rms_norm_style_bf16": ({}, ("bf16", "exact")),
    "gate_residual_ada_norm_fp8_static_bf16": ({"fused": True}, ("exact", "fp8", "exact")),
}




def _case(function, rows, dim, broadcast):
    flags, formats = FUNCTIONS[function]

    def make(device, gen):
        kw = ada_inputs(rows, dim, device, gen, broadcast=broadcast, **flags)
        return tuple(kw.values()), {}

    label = f"rows={rows},D={dim},style={'1' if broadcast else 'rows'}x3D"
    # the fused function updates ``residual`` in place
    return Case(function, label, make, formats, mutates=bool(flags.get("fused")))


def _sweep(on_gpu):
    shapes = [(1, 2), (3, 130), (5, 1030), (17, 64), (2, 3072), (2, 8200)]
    if on_gpu:
        shapes += [(64, 1024), (2520, 3072), (4096, 3072), (10, 1024), (333, 2048),
                   (16, 16384), (7, 12290)]
    return [_case(f, rows, dim, b) for f in FUNCTIONS for rows, dim in shapes
            for b in (False, True)]


CASES = _sweep(on_gpu=device_for_run().type == "cuda")
