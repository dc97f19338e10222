"""Float conversions inside Triton kernels match torch bit for bit.

On CPU this proves the exact casts the harness installs into Triton's
interpreter (its own round fp32->fp8 half-up without carry and truncate
fp32->bf16); on a GPU the same test checks the hardware conversions. FP8 is
saturating (`satfinite`): the reference clamps to +-448 before torch's cast.
"""

import pytest
import torch
import triton
import triton.language as tl

from flashrt_tools.validation import device_for_run


@triton.jit
def _cast_kernel(x_ptr, y_ptr, n, DST: tl.constexpr, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = o < n
    tl.store(y_ptr + o, tl.load(x_ptr + o, mask=m).to(DST), mask=m)


BOUNDARY = [0.0, -0.0, 1.0, -1.0, 124.14, -31.99, 447.9, 448.0, 449.0, 464.0, 480.0, 1e6, -1e6,
            2.0 ** -6, 2.0 ** -7, 2.0 ** -9, 2.0 ** -10, 3 * 2.0 ** -10, 1e-30, 65504.0, 65520.0,
            float("inf"), float("-inf"), float("nan"), 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,
            1.0 + 2.0 ** -4, 1.0 + 3 * 2.0 ** -4, 0.1, 3.4e38]


def _inputs(device):
    gen = torch.Generator().manual_seed(0)
    rnd = torch.randn(20000, generator=gen) * torch.logspace(-6, 3, 20000)
    # values exactly halfway between bf16 neighbours: round-to-even decides them
    ties = (torch.randn(2000, generator=gen).to(torch.bfloat16).float().view(torch.int32)
            | 0x8000).view(torch.float32)
    return torch.cat([torch.tensor(BOUNDARY), rnd, ties]).to(device)


def _reference(x, dtype):
    if dtype == torch.float8_e4m3fn:
        x = torch.where(torch.isnan(x), x, x.clamp(-448.0, 448.0))
    return x.to(dtype)


@pytest.mark.parametrize("dtype,tl_dtype", [
    (torch.bfloat16, tl.bfloat16), (torch.float8_e4m3fn, tl.float8e4nv), (torch.float16, tl.float16),
], ids=["bf16", "fp8e4m3", "fp16"])
def test_kernel_casts_match_torch(dtype, tl_dtype):
    device = device_for_run()
    x = _inputs(device)
    y = torch.empty(x.shape, dtype=dtype, device=device)
    _cast_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), DST=tl_dtype, BLOCK=1024)
    want = _reference(x, dtype)
    nan = torch.isnan(want.float())
    assert torch.equal(torch.isnan(y.float()), nan)
    bits = torch.int8 if dtype.itemsize == 1 else torch.int16
    same = y.view(bits) == want.view(bits)
    bad = (~same & ~nan).nonzero().flatten()
    assert bad.numel() == 0, (
        f"{bad.numel()} casts differ, e.g. {x[bad[:5]].tolist()} -> "
        f"{y[bad[:5]].float().tolist()} (torch: {want[bad[:5]].float().tolist()})")


def test_known_interpreter_failures_are_fixed():
    """The two values quoted in TRITON-NOTES.md round correctly now."""
    device = device_for_run()
    x = torch.tensor([124.14, -31.99], device=device)
    y = torch.empty(2, dtype=torch.float8_e4m3fn, device=device)
    _cast_kernel[(1,)](x, y, 2, DST=tl.float8e4nv, BLOCK=2)
    assert y.float().tolist() == [128.0, -32.0]


@triton.jit
def _min_max_kernel(x_ptr, y_ptr, lo_ptr, hi_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = o < n
    x = tl.load(x_ptr + o, mask=m)
    y = tl.load(y_ptr + o, mask=m)
    tl.store(lo_ptr + o, tl.minimum(x, y), mask=m)
    tl.store(hi_ptr + o, tl.maximum(x, y), mask=m)


def test_min_max_drop_a_nan_operand_like_the_gpu():
    """tl.minimum / tl.maximum (default propagate_nan) return the non-NaN operand, as
    the GPU's fminf / fmaxf do: the quantizers' clamp maps NaN to -448 through it.
    Fails on CPU without the interpreter patch in common/_host.py."""
    device = device_for_run()
    nan = float("nan")
    x = torch.tensor([nan, 1.0, nan, -2.0, 3.0], device=device)
    y = torch.tensor([5.0, nan, nan, 4.0, -1.0], device=device)
    lo, hi = torch.empty_like(x), torch.empty_like(x)
    _min_max_kernel[(1,)](x, y, lo, hi, x.numel(), BLOCK=8)
    want_lo = torch.fmin(x, y)
    want_hi = torch.fmax(x, y)
    assert torch.equal(lo.isnan(), want_lo.isnan()) and torch.equal(hi.isnan(), want_hi.isnan())
    finite = ~want_lo.isnan()
    assert torch.equal(lo[finite], want_lo[finite]) and torch.equal(hi[finite], want_hi[finite])


@triton.jit
def _bf16_dot_kernel(a_ptr, b_ptr, c_ptr, N: tl.constexpr):
    o = tl.arange(0, N)
    a = tl.load(a_ptr + o[:, None] * N + o[None, :])
    b = tl.load(b_ptr + o[:, None] * N + o[None, :])
    tl.store(c_ptr + o[:, None] * N + o[None, :], tl.dot(a, b))


def test_bf16_dot_multiplies_numbers():
    """tl.dot on bf16 tiles accumulates exact bf16 products in fp32, as the GPU does.
    Fails on CPU without the interpreter patch in common/_host.py (Triton 3.6 multiplies
    the raw uint16 bit patterns)."""
    device = device_for_run()
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(16, 16, generator=gen).to(torch.bfloat16).to(device)
    b = torch.randn(16, 16, generator=gen).to(torch.bfloat16).to(device)
    c = torch.empty(16, 16, device=device)
    _bf16_dot_kernel[(1,)](a, b, c, N=16)
    want = a.double() @ b.double()
    assert (c.double() - want).abs().max().item() < 1e-4
