"""Tests of flashrt-nvfp4, loaded through `kernels` from a fresh build.

Byte-exact against reference.py (and a plain Python loop), padding untouched,
size formula, bad inputs (nothing written), opcheck, compile, CUDA graph.
"""

import importlib

import pytest
import torch

from flashrt_tools.repo import ROOT, load_file
from flashrt_tools.validation import reference_of, run_case

cases = load_file(ROOT / "flashrt-nvfp4" / "tests" / "cases.py", "_flashrt_cases_flashrt_nvfp4")

GEN_SEED = 1234


def _gen():
    return torch.Generator().manual_seed(GEN_SEED)


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_matches_reference(kernel, device, case):
    verdicts, _ = run_case(kernel, reference_of(kernel), case, device, seed=GEN_SEED)
    for v in verdicts:
        assert v.ok, f"{case.id}: {v.message}"


@pytest.mark.parametrize("rows,D", [(1, 1024), (33, 4096), (129, 80)])
def test_matches_python_loop(kernel, device, rows, D):
    s = cases.linear_scales(rows, D, device, _gen())
    out = kernel.nvfp4_sf_linear_to_swizzled(s).cpu()
    want = torch.zeros_like(out)
    nb, ncs = D // 16, -(-(D // 16) // 4)
    for r in range(rows):
        for c in range(nb):
            off = ((r // 128) * ncs + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4
            want[off] = s[r, c].item()
    assert torch.equal(out, want)


def test_swizzle_worked_example(kernel, device):
    s = torch.zeros(34, 128 // 16, dtype=torch.uint8, device=device)
    s[33, 5] = 0xAB
    out = kernel.nvfp4_sf_linear_to_swizzled(s)
    assert out[533].item() == 0xAB and int((out != 0).sum()) == 1


def test_sizes(kernel):
    f = kernel.nvfp4_sf_swizzled_bytes
    assert (f(1, 4096), f(129, 4096), f(16, 12288), f(64, 16384)) == (32768, 65536, 98304, 131072)
    assert (f(128, 64), f(128, 80), f(1, 16)) == (512, 1024, 512)
    for rows, D, what in [(0, 16, "rows"), (-1, 16, "rows"), (1, 0, "D"), (1, 24, "D")]:
        with pytest.raises(ValueError, match=what):
            f(rows, D)


@pytest.mark.parametrize("rows", [1, 31, 32, 33, 127, 128, 129])
def test_out_padding_untouched_and_returned(kernel, device, rows):
    D = 80  # 5 blocks: 3 padding columns in the second super-column
    s = cases.linear_scales(rows, D, device, _gen())
    n = kernel.nvfp4_sf_swizzled_bytes(rows, D)
    out = torch.full((n + 7,), 0x5A, dtype=torch.uint8, device=device)
    got = kernel.nvfp4_sf_linear_to_swizzled(s, out=out, is_sfb=True)
    assert got is out
    want = reference_of(kernel).nvfp4_sf_linear_to_swizzled(s)
    written = torch.zeros(n + 7, dtype=torch.bool, device=device)
    written[reference_of(kernel).swizzled_offsets(rows, D // 16, device).flatten()] = True
    assert torch.equal(out[written], want[written[:n]])
    assert bool((out[~written] == 0x5A).all())


BAD = {
    "rank": (lambda s, o: (s[0], o), ValueError, "scales must be a 2-D tensor"),
    "dtype": (lambda s, o: (s.to(torch.int8), o), RuntimeError, "scales must have dtype torch.uint8"),
    "contiguity": (lambda s, o: (s.t(), o), RuntimeError, "scales must be contiguous"),
    "empty": (lambda s, o: (s[:0], o), RuntimeError, "scales must be non-empty"),
    "out_small": (lambda s, o: (s, o[:100]), RuntimeError, "out must contain at least"),
    "out_dtype": (lambda s, o: (s, o.view(torch.int8)), RuntimeError, "out must have dtype torch.uint8"),
    # size boundary (8 x 64 needs exactly 512 bytes) and a non-contiguous out (numel enough)
    "out_one_short": (lambda s, o: (s, o[:511]), RuntimeError, "out must contain at least"),
    "out_contiguity": (lambda s, o: (s, o.view(2, 256).t()), RuntimeError, "out must be contiguous"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_inputs(kernel, device, kind):
    edit, err, message = BAD[kind]
    s = cases.linear_scales(8, 64, device, _gen())
    out = torch.full((512,), 0x77, dtype=torch.uint8, device=device)
    s2, out2 = edit(s, out)
    with pytest.raises(err, match=message):
        kernel.nvfp4_sf_linear_to_swizzled(s2, out=out2)
    assert bool((out == 0x77).all())


def _ops(kernel):
    return importlib.import_module(f"{kernel.__name__}._ops").ops


def test_op_checks_D(kernel, device):
    s = cases.linear_scales(4, 64, device, _gen())
    out = torch.zeros(512, dtype=torch.uint8, device=device)
    with pytest.raises(RuntimeError, match="D must be positive and divisible by 16"):
        _ops(kernel).nvfp4_sf_linear_to_swizzled(s, out, 40, False)
    with pytest.raises(RuntimeError, match="scales.shape\\[1\\] must be D / 16"):
        _ops(kernel).nvfp4_sf_linear_to_swizzled(s, out, 128, False)
    assert bool((out == 0).all())


def test_op_checks_scales(kernel, device):
    """The op itself (no wrapper) rejects 1-D, empty and too-wide scales (RuntimeError, §5.3)."""
    s = cases.linear_scales(4, 64, device, _gen())
    out = torch.zeros(512, dtype=torch.uint8, device=device)
    for bad, D, message in [(s.flatten(), 64, "scales must be 2-D"),
                            (s[:0], 64, "scales must be non-empty"),
                            (s, 32, "scales.shape\\[1\\] must be D / 16")]:
        with pytest.raises(RuntimeError, match=message):
            _ops(kernel).nvfp4_sf_linear_to_swizzled(bad, out, D, False)
    assert bool((out == 0).all())


def test_opcheck(kernel, device):
    s = cases.linear_scales(33, 80, device, _gen())
    out = torch.zeros(kernel.nvfp4_sf_swizzled_bytes(33, 80), dtype=torch.uint8, device=device)
    torch.library.opcheck(_ops(kernel).nvfp4_sf_linear_to_swizzled, (s, out, 80, False))


def test_compile_fullgraph_no_recompile_across_row_counts(kernel, device):
    backend = "inductor" if device.type == "cuda" else "aot_eager"

    def fn(s, out):
        return kernel.nvfp4_sf_linear_to_swizzled(s, out=out)

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend=backend)

    def inputs(rows):
        s = cases.linear_scales(rows, 64, device, _gen())
        return s, torch.zeros(kernel.nvfp4_sf_swizzled_bytes(200, 64), dtype=torch.uint8,
                              device=device)

    compiled(*inputs(7))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for rows in (5, 33, 129):
            s, out = inputs(rows)
            got = compiled(s, out.clone())
            assert torch.equal(got, fn(s, out.clone()))


@pytest.mark.gpu
def test_cuda_graph_replay_matches_eager(kernel):
    device = torch.device("cuda")
    s = cases.linear_scales(129, 4096, device, _gen())
    out = torch.zeros(kernel.nvfp4_sf_swizzled_bytes(129, 4096), dtype=torch.uint8, device=device)
    kernel.nvfp4_sf_linear_to_swizzled(s, out=out)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        kernel.nvfp4_sf_linear_to_swizzled(s, out=out)
    s.copy_(cases.linear_scales(129, 4096, device, torch.Generator().manual_seed(7)))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, reference_of(kernel).nvfp4_sf_linear_to_swizzled(s))


def test_direct_launch_equals_op(kernel, device):
    s = cases.linear_scales(40, 96, device, _gen())
    a = kernel.nvfp4_sf_linear_to_swizzled(s)
    b = torch.zeros_like(a)
    _ops(kernel).nvfp4_sf_linear_to_swizzled(s, b, 96, False)
    assert torch.equal(a, b)
