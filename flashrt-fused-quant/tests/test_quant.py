"""Tests of flashrt-fused-quant, loaded through `kernels` from a fresh build.

Byte-exact packed codes and swizzled scales against reference.py; encode
rules on hand-built blocks (ties away from zero, negative zero, round-up
scale, > 240 rule); padding untouched; bad inputs (nothing written);
opcheck, compile, CUDA graph.
"""

import importlib

import pytest
import torch

from flashrt_tools.repo import ROOT, load_file
from flashrt_tools.validation import reference_of, run_case

cases = load_file(ROOT / "flashrt-fused-quant" / "tests" / "cases.py",
                  "_flashrt_cases_flashrt_fused_quant")

GEN_SEED = 1234


def _gen():
    return torch.Generator().manual_seed(GEN_SEED)


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_matches_reference(kernel, device, case):
    verdicts, _ = run_case(kernel, reference_of(kernel), case, device, seed=GEN_SEED)
    for v in verdicts:
        assert v.ok, f"{case.id}: {v.message}"


def test_sizes(kernel):
    f = kernel.nvfp4_swizzled_scale_bytes
    assert (f(1, 4096), f(129, 4096), f(16, 12288), f(64, 16384)) == (32768, 65536, 98304, 131072)
    for rows, cols, what in [(0, 16, "rows must be positive"), (1, 0, "cols must be positive"),
                             (1, 24, "divisible by 16")]:
        with pytest.raises(ValueError, match=what):
            f(rows, cols)


def _quant_of_y(kernel, y, device):
    """Feed exact y through the op: gate = large (SiLU(g) = g in bf16), up = y / g."""
    gate = torch.full_like(y, 64.0)  # bf16(64 / (1 + exp(-64))) = 64
    up = y / 64.0  # exact (power of two)
    return kernel.silu_mul_quant_nvfp4_swizzled_bf16(gate.to(device), up.to(device))


def test_encode_rules(kernel, device):
    """One block, amax 6 -> scale 1.0 (0x38): thresholds are the E2M1 midpoints,
    ties away from zero, negatives carry the sign bit (tiny negative -> 0x8)."""
    v = torch.tensor([[6.0, 0.25, 0.2, -0.2, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 4.9, -6.0,
                       -0.25, 0.0, -2.5, 1.0]], dtype=torch.bfloat16)
    packed, scales = _quant_of_y(kernel, v, device)
    codes = torch.stack([packed.cpu() & 0xF, packed.cpu() >> 4], -1).flatten().tolist()
    assert scales[0].item() == 0x38
    assert codes == [7, 1, 0, 8, 2, 3, 4, 5, 6, 7, 6, 15, 9, 0, 13, 2]


def _bf16_below(x):
    """The largest bf16 value below positive x."""
    return (torch.tensor([x], dtype=torch.bfloat16).view(torch.int16) - 1).view(torch.bfloat16)


def test_encode_just_below_each_threshold(kernel, device):
    """The bf16 value just under each E2M1 midpoint rounds down (the GPU encode reads
    the code from round-toward-zero bits: one rounding the wrong way shows here)."""
    below = torch.cat([_bf16_below(t) for t in (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)])
    v = torch.cat([torch.tensor([6.0], dtype=torch.bfloat16), below, -below[[0, 6]],
                   torch.tensor([0.5, 3.0, 4.0, 1.5, 2.0, -1.0], dtype=torch.bfloat16)])[None]
    packed, scales = _quant_of_y(kernel, v, device)
    codes = torch.stack([packed.cpu() & 0xF, packed.cpu() >> 4], -1).flatten().tolist()
    assert scales[0].item() == 0x38
    assert codes == [7, 0, 1, 2, 3, 4, 5, 6, 8, 14, 1, 5, 6, 3, 4, 10]


@pytest.mark.parametrize("amax,byte", [
    (6.0 * 1.0, 0x38), (6.0 * 1.0625, 0x39),  # round up within the mantissa
    (6.0 * 1.875 * 1.01, 0x40),  # mantissa carry into the exponent
    (6.0 * 240.0, 0x77), (6.0 * 241.0, 0xFE), (6.0 * 2000.0, 0xFE),  # > 240 -> 0xFE (448)
    (6.0 * 2.0 ** -9, 0x01), (6.0 * 2.0 ** -12, 0x01), (6.0 * 3.5 * 2.0 ** -9, 0x04),
    (6.0 * 7.5 * 2.0 ** -9, 0x08),
])
def test_scale_round_up(kernel, device, amax, byte):
    y = torch.zeros(1, 16, dtype=torch.bfloat16)
    y[0, 3] = amax
    y[0, 4] = -amax / 3
    packed, scales = _quant_of_y(kernel, y, device)
    want_p, want_s = reference_of(kernel).silu_mul_quant_nvfp4_swizzled_bf16(
        torch.full_like(y, 64.0).to(device), (y / 64.0).to(device))
    assert scales[0].item() == byte == want_s[0].item()
    assert torch.equal(packed, want_p)


def test_zero_block_scale_zero_and_codes(kernel, device):
    y = torch.zeros(2, 32, dtype=torch.bfloat16)
    y[1, 16:] = -0.0
    packed, scales = _quant_of_y(kernel, y, device)
    assert bool((packed == 0).all()) and bool((scales == 0).all())


def test_merged_equals_split(kernel, device):
    x = cases.merged_input(33, 80, device, _gen())
    p1, s1 = kernel.silu_mul_merged_quant_nvfp4_swizzled_bf16(x)
    p2, s2 = kernel.silu_mul_quant_nvfp4_swizzled_bf16(x[:, :80].contiguous(),
                                                       x[:, 80:].contiguous())
    assert torch.equal(p1, p2) and torch.equal(s1, s2)


@pytest.mark.parametrize("rows", [1, 31, 32, 33, 127, 128, 129])
def test_out_buffers_padding_untouched(kernel, device, rows):
    cols = 80
    kw = cases.split_inputs(rows, cols, device, _gen())
    n = kernel.nvfp4_swizzled_scale_bytes(rows, cols)
    packed = torch.full((rows, cols // 2), 0x5A, dtype=torch.uint8, device=device)
    scales = torch.full((n,), 0xA5, dtype=torch.uint8, device=device)
    got = kernel.silu_mul_quant_nvfp4_swizzled_bf16(**kw, packed=packed, scales=scales)
    assert got[0] is packed and got[1] is scales
    ref = reference_of(kernel)
    want_p, want_s = ref.silu_mul_quant_nvfp4_swizzled_bf16(**kw)
    assert torch.equal(packed, want_p)
    written = torch.zeros(n, dtype=torch.bool, device=device)
    written[ref.swizzled_offsets(rows, cols // 16, device).flatten()] = True
    assert torch.equal(scales[written], want_s[written])
    assert bool((scales[~written] == 0xA5).all())


def _bad_split(kind, device):
    kw = cases.split_inputs(4, 64, device, _gen())
    err = RuntimeError
    if kind == "rank":
        kw["gate"], err = kw["gate"][0], ValueError
    elif kind == "dtype":
        kw["up"] = kw["up"].half()
    elif kind == "shape":
        kw["up"] = kw["up"][:3]
    elif kind == "cols":
        kw["gate"], kw["up"] = kw["gate"][:, :24].contiguous(), kw["up"][:, :24].contiguous()
    elif kind == "contiguity":
        kw["gate"] = torch.empty(64, 4, dtype=torch.bfloat16, device=device).t()
    elif kind == "empty":
        kw["gate"], kw["up"] = kw["gate"][:0], kw["up"][:0]
    elif kind == "gate_dtype":
        kw["gate"] = kw["gate"].float()
    elif kind == "up_contiguity":  # same values, column-major storage
        kw["up"] = kw["up"].t().contiguous().t()
    elif kind == "shape_cols":
        kw["up"] = kw["up"][:, :48].contiguous()
    elif kind == "misaligned":  # odd storage offset: the bf16 pairs are not 4-byte words
        kw["gate"] = _odd_offset_copy(kw["gate"])
    return kw, err


def _odd_offset_copy(t):
    """A contiguous copy of ``t`` starting at an odd bf16 storage offset."""
    buf = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
    out = buf[1:].view(t.shape)
    out.copy_(t)
    return out


SPLIT_BAD = {"rank": "gate must be a 2-D tensor", "dtype": "up must have dtype torch.bfloat16",
             "shape": "up must have the same sizes as gate",
             "cols": "cols must be positive and divisible by 16",
             "contiguity": "gate must be contiguous", "empty": "rows must be positive",
             "packed_small": "packed must contain at least", "scales_small": "scales must contain at least",
             "packed_dtype": "packed must have dtype torch.uint8",
             # the kinds below pin each remaining check (one mutant each survived without them)
             "gate_dtype": "gate must have dtype torch.bfloat16",
             "up_contiguity": "up must be contiguous",
             "shape_cols": "up must have the same sizes as gate",
             "misaligned": "gate must be 4-byte aligned",
             "packed_one_short": "packed must contain at least",
             "scales_one_short": "scales must contain at least",
             "scales_dtype": "scales must have dtype torch.uint8",
             "packed_contiguity": "packed must be contiguous",
             "scales_contiguity": "scales must be contiguous"}


@pytest.mark.parametrize("kind", sorted(SPLIT_BAD))
def test_split_bad_inputs(kernel, device, kind):
    kw, err = _bad_split(kind, device)
    packed = torch.full((4, 32), 0x5A, dtype=torch.uint8, device=device)
    scales = torch.full((512,), 0xA5, dtype=torch.uint8, device=device)
    p, s = packed, scales
    if kind == "packed_small":
        p = packed[:3]
    elif kind == "scales_small":
        s = scales[:100]
    elif kind == "packed_dtype":
        p = packed.view(torch.int8)
    elif kind == "packed_one_short":  # 4 x 64 needs 128 packed and 512 scale bytes
        p = packed.flatten()[:127]
    elif kind == "scales_one_short":
        s = scales[:511]
    elif kind == "scales_dtype":
        s = scales.view(torch.int8)
    elif kind == "packed_contiguity":
        p = packed.t()
    elif kind == "scales_contiguity":
        s = scales.view(2, 256).t()
    with pytest.raises(err, match=SPLIT_BAD[kind]):
        kernel.silu_mul_quant_nvfp4_swizzled_bf16(**kw, packed=p, scales=s)
    assert bool((packed == 0x5A).all()) and bool((scales == 0xA5).all())


@pytest.mark.parametrize("width,err,message", [
    (63, ValueError, "even width"), (48, RuntimeError, "must be positive and divisible by 32")])
def test_merged_bad_width(kernel, device, width, err, message):
    x = torch.randn(2, width, generator=_gen()).to(torch.bfloat16).to(device)
    packed = torch.full((2, 16), 0x5A, dtype=torch.uint8, device=device)
    scales = torch.full((512,), 0xA5, dtype=torch.uint8, device=device)
    with pytest.raises(err, match=message):
        kernel.silu_mul_merged_quant_nvfp4_swizzled_bf16(x, packed=packed, scales=scales)
    assert bool((packed == 0x5A).all()) and bool((scales == 0xA5).all())


MERGED_BAD = {"dtype": "merged_gate_up must have dtype torch.bfloat16",
              "contiguity": "merged_gate_up must be contiguous",
              "empty": "rows must be positive", "misaligned": "merged_gate_up must be 4-byte aligned",
              "packed_one_short": "packed must contain at least",
              "scales_one_short": "scales must contain at least"}


@pytest.mark.parametrize("kind", sorted(MERGED_BAD))
def test_merged_bad_inputs(kernel, device, kind):
    """Merged-op input / output checks (dtype, contiguity, rows, alignment, sizes): nothing written."""
    x = cases.merged_input(4, 64, device, _gen())
    packed = torch.full((4, 32), 0x5A, dtype=torch.uint8, device=device)
    scales = torch.full((512,), 0xA5, dtype=torch.uint8, device=device)
    p, s = packed, scales
    if kind == "dtype":
        x = x.half()
    elif kind == "contiguity":
        x = x.t().contiguous().t()
    elif kind == "empty":
        x = x[:0]
    elif kind == "misaligned":
        x = _odd_offset_copy(x)
    elif kind == "packed_one_short":
        p = packed.flatten()[:127]
    elif kind == "scales_one_short":
        s = scales[:511]
    with pytest.raises(RuntimeError, match=MERGED_BAD[kind]):
        kernel.silu_mul_merged_quant_nvfp4_swizzled_bf16(x, packed=p, scales=s)
    assert bool((packed == 0x5A).all()) and bool((scales == 0xA5).all())


def test_flat_packed_accepted_eager(kernel, device):
    """Eager checks only the packed size (spec §6.3): a flat buffer gets the row-major bytes."""
    kw = cases.split_inputs(5, 48, device, _gen())
    packed = torch.full((5 * 24 + 3,), 0x5A, dtype=torch.uint8, device=device)
    got_p, got_s = kernel.silu_mul_quant_nvfp4_swizzled_bf16(**kw, packed=packed)
    want_p, want_s = reference_of(kernel).silu_mul_quant_nvfp4_swizzled_bf16(**kw)
    assert got_p is packed
    assert torch.equal(packed[:120], want_p.flatten()) and bool((packed[120:] == 0x5A).all())
    assert torch.equal(got_s, want_s)


def test_fake_requires_exact_packed_shape(kernel, device):
    """The fake (compile-time) impls reject a flat packed buffer (spec §6.3: exact (R, C/2))."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    kw = cases.split_inputs(4, 64, device, _gen())
    x = cases.merged_input(4, 64, device, _gen())
    with FakeTensorMode() as mode:
        gate, up, merged = (mode.from_tensor(t) for t in (kw["gate"], kw["up"], x))
        flat = torch.empty(128, dtype=torch.uint8, device=device)
        exact = torch.empty(4, 32, dtype=torch.uint8, device=device)
        scales = torch.empty(512, dtype=torch.uint8, device=device)
        _ops(kernel).silu_mul_quant_nvfp4_swizzled_bf16(gate, up, exact, scales)
        _ops(kernel).silu_mul_merged_quant_nvfp4_swizzled_bf16(merged, exact, scales)
        with pytest.raises(RuntimeError, match="packed must have shape"):
            _ops(kernel).silu_mul_quant_nvfp4_swizzled_bf16(gate, up, flat, scales)
        with pytest.raises(RuntimeError, match="packed must have shape"):
            _ops(kernel).silu_mul_merged_quant_nvfp4_swizzled_bf16(merged, flat, scales)


def test_inf_and_nan_codes(kernel, device):
    """+-inf blocks: scale 0xFE, codes 0x7 / 0xF, rest as reference; a NaN element codes 7 (§6.2)."""
    y = (torch.randn(1, 48, generator=_gen()) * 2.0).to(torch.bfloat16)
    y[0, 2], y[0, 5], y[0, 19] = float("inf"), float("-inf"), float("nan")
    packed, scales = _quant_of_y(kernel, y, device)
    want_p, want_s = reference_of(kernel).silu_mul_quant_nvfp4_swizzled_bf16(
        torch.full_like(y, 64.0).to(device), (y / 64.0).to(device))
    packed, scales, want_p, want_s = packed.cpu(), scales.cpu(), want_p.cpu(), want_s.cpu()
    codes = torch.stack([packed & 0xF, packed >> 4], -1).flatten().tolist()
    assert scales[0].item() == 0xFE and codes[2] == 0x7 and codes[5] == 0xF
    assert codes[19] == 0x7  # NaN (block 1's scale is left open: NaN in amax is not pinned)
    for kb in (0, 2):  # rows = 1: scale of block kb at byte kb
        assert torch.equal(packed[:, 8 * kb:8 * kb + 8], want_p[:, 8 * kb:8 * kb + 8])
        assert scales[kb].item() == want_s[kb].item()


def _ops(kernel):
    return importlib.import_module(f"{kernel.__name__}._ops").ops


def test_opcheck(kernel, device):
    kw = cases.split_inputs(33, 80, device, _gen())
    n = kernel.nvfp4_swizzled_scale_bytes(33, 80)
    outs = lambda: (torch.zeros(33, 40, dtype=torch.uint8, device=device),  # noqa: E731
                    torch.zeros(n, dtype=torch.uint8, device=device))
    torch.library.opcheck(_ops(kernel).silu_mul_quant_nvfp4_swizzled_bf16,
                          (kw["gate"], kw["up"], *outs()))
    x = cases.merged_input(33, 80, device, _gen())
    torch.library.opcheck(_ops(kernel).silu_mul_merged_quant_nvfp4_swizzled_bf16, (x, *outs()))


def test_compile_fullgraph_no_recompile_across_row_counts(kernel, device):
    backend = "inductor" if device.type == "cuda" else "aot_eager"

    def fn(gate, up, merged):
        p, s = kernel.silu_mul_quant_nvfp4_swizzled_bf16(gate, up)
        pm, sm = kernel.silu_mul_merged_quant_nvfp4_swizzled_bf16(merged)
        return p, s, pm, sm

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend=backend)

    def inputs(rows):
        kw = cases.split_inputs(rows, 64, device, _gen())
        return kw["gate"], kw["up"], cases.merged_input(rows, 64, device, _gen())

    compiled(*inputs(7))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for rows in (5, 33, 129):
            args = inputs(rows)
            for got, want in zip(compiled(*args), fn(*args)):
                assert torch.equal(got, want)


@pytest.mark.gpu
def test_cuda_graph_replay_matches_eager(kernel):
    device = torch.device("cuda")
    kw = cases.split_inputs(257, 4096, device, _gen())
    x = cases.merged_input(257, 4096, device, _gen())
    n = kernel.nvfp4_swizzled_scale_bytes(257, 4096)
    outs = [torch.zeros(257, 2048, dtype=torch.uint8, device=device),
            torch.zeros(n, dtype=torch.uint8, device=device)]
    outs_m = [torch.zeros_like(o) for o in outs]

    def step():
        kernel.silu_mul_quant_nvfp4_swizzled_bf16(**kw, packed=outs[0], scales=outs[1])
        kernel.silu_mul_merged_quant_nvfp4_swizzled_bf16(x, packed=outs_m[0], scales=outs_m[1])

    step()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    fresh = cases.split_inputs(257, 4096, device, torch.Generator().manual_seed(7))
    for k in kw:
        kw[k].copy_(fresh[k])
    x.copy_(cases.merged_input(257, 4096, device, torch.Generator().manual_seed(8)))
    graph.replay()
    torch.cuda.synchronize()
    ref = reference_of(kernel)
    for got, want in zip(outs, ref.silu_mul_quant_nvfp4_swizzled_bf16(**kw)):
        assert torch.equal(got, want)
    for got, want in zip(outs_m, ref.silu_mul_merged_quant_nvfp4_swizzled_bf16(x)):
        assert torch.equal(got, want)


def test_direct_launch_equals_op(kernel, device):
    kw = cases.split_inputs(9, 48, device, _gen())
    p, s = kernel.silu_mul_quant_nvfp4_swizzled_bf16(**kw)
    p2, s2 = torch.zeros_like(p), torch.zeros_like(s)
    _ops(kernel).silu_mul_quant_nvfp4_swizzled_bf16(kw["gate"], kw["up"], p2, s2)
    assert torch.equal(p, p2) and torch.equal(s, s2)
