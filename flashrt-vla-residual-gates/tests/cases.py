"""Input builders and the accuracy sweep of flashrt-vla-residual-gates.

Shared by the tests, `flashrt validate` and the benchmark's correctness gate.
Data as the spec's tests: residual / x ``randn`` (never zeros), gates
``0.5·randn``, bias ``0.02·randn``; the FP8 video gate is
``clamp(gate / 0.01, ±448)`` in E4M3 with ``v_gate_scale = 0.01``.
Every output must be bit-exact (format ``exact``).

Segments: (video, action, und) rows with ragged counts (1, odd, more than one
tile) and widths (2, 130 = just over a tile's 128 columns, 258, 1030), the
three segments with different widths in one call; model shapes on the GPU.
"""

import torch

from flashrt_tools.validation import Case, device_for_run

GATE_SCALE = 0.01


def _randn(shape, gen, device, dtype=torch.bfloat16, scale=1.0):
    return (torch.randn(shape, generator=gen) * scale).to(dtype=dtype, device=device)


def fp8_gate(rows, dim, gen, device, scale=GATE_SCALE):
    g = torch.randn((rows, dim), generator=gen) * 0.5
    return (g / scale).clamp(-448, 448).to(torch.float8_e4m3fn).to(device)


def segment(prefix, rows, dim, device, gen, *, bias=False, gate=False, gate_fp8=False):
    kw = {f"{prefix}residual": _randn((rows, dim), gen, device),
          f"{prefix}x": _randn((rows, dim), gen, device)}
    if bias:
        kw[f"{prefix}bias"] = _randn((dim,), gen, device, scale=0.02)
    if gate:
        kw[f"{prefix}gate"] = _randn((rows, dim), gen, device, scale=0.5)
    if gate_fp8:
        kw[f"{prefix}gate_fp8"] = fp8_gate(rows, dim, gen, device)
        kw[f"{prefix}gate_scale"] = torch.tensor([GATE_SCALE], dtype=torch.float32,
                                                 device=device)
    return kw


JOINT3 = {  # name -> (video gate fp8, action has bias)
    "joint3_bias_gate_residual_bf16": (False, True),
    "joint3_bias_gate_residual_action_nobias_bf16": (False, False),
    "joint3_bias_fp8_gate_residual_bf16": (True, True),
    "joint3_bias_fp8_gate_residual_action_nobias_bf16": (True, False),
}


def joint3_inputs(function, rows, dims, device, gen):
    """rows = (v, a, u); dims = (v, a, u) widths. Keyword inputs in the spec's order."""
    v_fp8, a_bias = JOINT3[function]
    kw = segment("v_", rows[0], dims[0], device, gen, bias=True, gate=not v_fp8,
                 gate_fp8=v_fp8)
    kw.update(segment("a_", rows[1], dims[1], device, gen, bias=a_bias, gate=True))
    kw.update(segment("u_", rows[2], dims[2], device, gen))
    return kw


def single_inputs(function, rows, dim, device, gen):
    gated = function == "gate_residual_bf16"
    return segment("", rows, dim, device, gen, bias=not gated, gate=gated)


def _joint3_case(function, rows, dims):
    def make(device, gen):
        return (), joint3_inputs(function, rows, dims, device, gen)

    label = "rows=" + "/".join(map(str, rows)) + ",D=" + "/".join(map(str, dims))
    return Case(function, label, make, ("exact", "exact", "exact"))


def _single_case(function, rows, dim):
    def make(device, gen):
        return (), single_inputs(function, rows, dim, device, gen)

    return Case(function, f"rows={rows},D={dim}", make, ("exact",))


def _sweep(on_gpu):
    joint = [((64, 8, 4), (1024,) * 3), ((1, 1, 1), (2, 2, 2)), ((5, 3, 7), (130, 258, 66)),
             ((17, 2, 1), (1030, 1030, 1030))]
    single = [(1, 2), (3, 130), (10, 1024), (17, 1152), (9, 1030)]
    if on_gpu:
        joint += [((2520, 16, 16), (3072,) * 3), ((4096, 16, 16), (3072,) * 3),
                  ((51, 8, 4), (1536,) * 3), ((333, 7, 1), (2050, 1024, 130))]
        single += [(10, 2048), (512, 1152), (2520, 3072), (4096, 3072)]
    cases = [_joint3_case(f, r, d) for f in JOINT3 for r, d in joint]
    cases += [_single_case(f, r, d) for f in ("gate_residual_bf16", "bias_residual_bf16")
              for r, d in single]
    return cases


CASES = _sweep(on_gpu=device_for_run().type == "cuda")
