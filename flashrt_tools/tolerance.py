"""Tolerances by number format, stated once (see DESIGN.md "Testing").

Every comparison returns a ``Verdict`` (ok + metrics + a readable message) so
pytest, `flashrt validate` and the benchmarks judge outputs the same way.

* ``exact``  bit-for-bit equality (copies, layout ops).
* ``bf16``   each element within ``ulps`` bf16 ulps of the reference, or within
             ``atol`` of it. The kernels and the reference compute in fp32 in a
             different order (sums, FMA contraction on GPU), so a value that
             lands near a bf16 rounding boundary may round to the neighbour:
             1 ulp. ``atol`` (default 1e-5, far below one bf16 ulp of the O(1)
             values involved) covers results of fp32 cancellation near zero,
             where the ulp itself is tiny.
* ``fp16``   the bf16 rule for fp16 outputs.
* ``fp8``    byte parity of E4M3 codes, except a bounded fraction of codes one
             step away (an fp32 value at a rounding boundary, as above).
* ``gemm``   p99 absolute error, cosine similarity and relative RMS, for
             outputs of long fp32 reductions.
"""

import dataclasses
import math

import torch


@dataclasses.dataclass
class Verdict:
    ok: bool
    fmt: str
    max_abs: float
    detail: str

    @property
    def message(self) -> str:
        return f"[{self.fmt}] {'pass' if self.ok else 'FAIL'}: {self.detail}"


def _ordered_bits(t: torch.Tensor) -> torch.Tensor:
    """Map float bits to integers that order like the floats (+0 == -0)."""
    bits_dtype = {1: torch.int8, 2: torch.int16, 4: torch.int32}[t.element_size()]
    i = t.contiguous().view(bits_dtype).to(torch.int64)
    sign_bit = 1 << (8 * t.element_size() - 1)
    return torch.where(i < 0, -(i + sign_bit), i)


def _both_nan_or_equal_nan(got, ref):
    g, r = torch.isnan(got), torch.isnan(ref)
    return g, r, bool((g != r).any())


def _max_abs(got, ref) -> float:
    finite = torch.isfinite(got) & torch.isfinite(ref)
    if not finite.any():
        return 0.0
    return (got.double() - ref.double())[finite].abs().max().item()


def compare_exact(got, ref) -> Verdict:
    if not isinstance(got, torch.Tensor):  # pure-Python results (byte counts, sizes)
        got, ref = torch.tensor(got), torch.tensor(ref)
    if got.shape != ref.shape or got.dtype != ref.dtype:
        return Verdict(False, "exact", float("inf"),
                       f"shape/dtype {tuple(got.shape)} {got.dtype} vs {tuple(ref.shape)} {ref.dtype}")
    bits_dtype = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[got.element_size()]
    diff = int((got.contiguous().view(bits_dtype) != ref.contiguous().view(bits_dtype)).sum())
    ok = diff == 0
    return Verdict(ok, "exact", 0.0 if ok else _max_abs(got.float(), ref.float()),
                   f"{diff} of {got.numel()} elements differ bitwise")


def compare_bf16(got: torch.Tensor, ref: torch.Tensor, *, ulps: int = 1,
                 atol: float = 1e-5) -> Verdict:
    return _compare_ulps("bf16", torch.bfloat16, got, ref, ulps=ulps, atol=atol)


def compare_fp16(got: torch.Tensor, ref: torch.Tensor, *, ulps: int = 1,
                 atol: float = 1e-5) -> Verdict:
    """The bf16 rule for fp16 outputs: one rounding of an fp32 value."""
    return _compare_ulps("fp16", torch.float16, got, ref, ulps=ulps, atol=atol)


def _compare_ulps(fmt, dtype, got, ref, *, ulps, atol) -> Verdict:
    if got.shape != ref.shape or got.dtype != dtype or ref.dtype != dtype:
        return Verdict(False, fmt, float("inf"),
                       f"shape/dtype {tuple(got.shape)} {got.dtype} vs {tuple(ref.shape)} {ref.dtype}")
    g_nan, r_nan, nan_mismatch = _both_nan_or_equal_nan(got, ref)
    ulp_dist = (_ordered_bits(got) - _ordered_bits(ref)).abs()
    abs_err = (got.float() - ref.float()).abs()
    bad = ~(g_nan & r_nan) & (ulp_dist > ulps) & ~(abs_err <= atol)
    n_bad, n_diff = int(bad.sum()), int(((ulp_dist > 0) & ~(g_nan & r_nan)).sum())
    ok = n_bad == 0 and not nan_mismatch
    max_ulp = int(ulp_dist[~(g_nan | r_nan)].max()) if got.numel() else 0
    detail = (f"max_abs={_max_abs(got, ref):.3g} max_ulp={max_ulp} "
              f"differing={n_diff}/{got.numel()} beyond {ulps} ulp & atol {atol:g}: {n_bad}")
    if nan_mismatch:
        detail += " NaN positions differ"
    return Verdict(ok, fmt, _max_abs(got, ref), detail)


def compare_fp8(got: torch.Tensor, ref: torch.Tensor, *, max_step_rate: float = 1e-3) -> Verdict:
    """E4M3 codes equal, except at most ``max_step_rate`` of them one code apart."""
    if got.shape != ref.shape or got.dtype != ref.dtype:
        return Verdict(False, "fp8", float("inf"), "shape/dtype mismatch")
    step = (_ordered_bits(got) - _ordered_bits(ref)).abs()
    n_one, n_far = int((step == 1).sum()), int((step > 1).sum())
    rate = n_one / max(1, got.numel())
    ok = n_far == 0 and rate <= max_step_rate
    return Verdict(ok, "fp8", _max_abs(got.float(), ref.float()),
                   f"one-step codes {n_one} ({rate:.2e}, allowed {max_step_rate:.0e}), "
                   f"farther {n_far}")


def compare_gemm(got: torch.Tensor, ref: torch.Tensor, *, p99_abs: float,
                 min_cosine: float = 0.9999, max_rel_rms: float = 1e-2) -> Verdict:
    d = (got.double() - ref.double()).flatten()
    r = ref.double().flatten()
    # kthvalue, not quantile: quantile refuses tensors over 16M elements
    p99 = d.abs().kthvalue(max(1, math.ceil(0.99 * d.numel()))).values.item() if d.numel() else 0.0
    cos = torch.nn.functional.cosine_similarity(got.double().flatten(), r, dim=0).item()
    rel_rms = (d.norm() / r.norm().clamp_min(1e-30)).item()
    ok = p99 <= p99_abs and cos >= min_cosine and rel_rms <= max_rel_rms
    return Verdict(ok, "gemm", _max_abs(got, ref),
                   f"p99_abs={p99:.3g} (<= {p99_abs:g}) cosine={cos:.6f} rel_rms={rel_rms:.2e}")


COMPARATORS = {"exact": compare_exact, "bf16": compare_bf16, "fp16": compare_fp16,
               "fp8": compare_fp8, "gemm": compare_gemm}


def compare(fmt: str, got, ref, **kwargs) -> Verdict:
    return COMPARATORS[fmt](got, ref, **kwargs)


def fp8_product_fp64(x: torch.Tensor, w: torch.Tensor, sx: torch.Tensor,
                     sw: torch.Tensor) -> torch.Tensor:
    """``(sx * x) @ (sw * w)^T`` in fp64 for FP8 ``x`` [M, K], ``w`` [N, K]: the exact
    product an FP8 GEMM's accumulation policy is measured against."""
    return (x.double() * sx.double()) @ (w.double() * sw.double()).t()


def error_vs_fp64(out: torch.Tensor, ref64: torch.Tensor):
    """(relative L2 error, share of outputs not equal to the correctly rounded value) of
    ``out`` against an fp64 reference."""
    err = out.double() - ref64
    return (err.norm() / ref64.norm()).item(), (out != ref64.to(out.dtype)).double().mean().item()
