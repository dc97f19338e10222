"""Residual glue for VLA / video blocks: bias, gate and residual add, bit-exact.

Six public functions (spec: postprocess-norms.md §4):

* ``gate_residual_bf16``        bf16(r + x·g)                  (``out`` may be ``residual``)
* ``bias_residual_bf16``        bf16((r + x) + b)              (``out`` may be ``residual``)
* ``joint3_bias_gate_residual_bf16``                 v: r + (x + b)·g, a: r + (x + b)·g, u: r + x
* ``joint3_bias_gate_residual_action_nobias_bf16``   v: r + (x + b)·g, a: r + x·g,       u: r + x
* ``joint3_bias_fp8_gate_residual_bf16``             as the bias variant, v gate = fp8 · scale
* ``joint3_bias_fp8_gate_residual_action_nobias_bf16``  as the nobias variant, v gate = fp8 · scale

All arithmetic fp32 in the order written, one bf16 rounding per output: bit-exact
with the PyTorch fp32 eager formula. FMA contraction is switched off for these
kernels (``enable_fp_fusion=False``), so ``r + t·g`` rounds the product before
the add as eager PyTorch does (a fused multiply-add would differ by 1 bf16 ulp
at rounding boundaries). The three segments of the joint kernels (own rows, own
widths) are updated by one launch: each program takes one (rows x columns) tile
of one segment, the program id selects the segment. The single-segment functions
run the (rows, dim) tensors as one flat array (``flat_config`` picks the launch).
"""

from typing import NamedTuple, Optional, Tuple

import torch
import triton
import triton.language as tl

from ._helpers import enter_dependent_launch
from ._host import (cdiv, check_rows_even_dim, check_same_device, check_shape, check_tensor,
                    dependent_launch, device_guard, launch_directly, next_power_of_2)
from ._ops import add_op_namespace_prefix

_BF16 = torch.bfloat16
_FP32 = torch.float32
_FP8 = torch.float8_e4m3fn
_TILE = 2048  # elements per joint3 program
_MAX_BLOCK_C = 256  # columns per joint3 tile (512 contiguous bytes per row and tensor)
_FLAT_BLOCK = 1024  # elements per single-segment program
_FLAT_WARPS = 4
_INT32_MAX = 2**31 - 1  # largest int32 offset

@triton.jit
def _segment_tile(t, res_ptr, x_ptr, b_ptr, g_ptr, gs_ptr, out_ptr, rows, dim,
                  MODE: tl.constexpr, GATE_FP8: tl.constexpr,
                  BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Tile ``t`` (row-block major) of one (rows, dim) segment. MODE: 0 r + x,
    1 r + x·g, 2 r + (x + b)·g, 3 (r + x) + b."""
    n_cb = tl.cdiv(dim, BLOCK_C)
    o_r = (t // n_cb).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    o_c = (t % n_cb) * BLOCK_C + tl.arange(0, BLOCK_C)
    m_c = o_c < dim
    m = (o_r < rows)[:, None] & m_c[None, :]
    o = o_r[:, None] * dim + o_c[None, :]
    b_r = tl.load(res_ptr + o, mask=m, other=0.0).to(tl.float32)
    b_x = tl.load(x_ptr + o, mask=m, other=0.0).to(tl.float32)
    if MODE == 1 or MODE == 2:
        if GATE_FP8:
            b_g = tl.load(g_ptr + o, mask=m, other=0.0).to(tl.float32) * tl.load(gs_ptr)
        else:
            b_g = tl.load(g_ptr + o, mask=m, other=0.0).to(tl.float32)
    if MODE == 2 or MODE == 3:
        b_b = tl.load(b_ptr + o_c, mask=m_c, other=0.0).to(tl.float32)[None, :]
    if MODE == 0:
        y = b_r + b_x
    elif MODE == 1:
        y = b_r + b_x * b_g
    elif MODE == 2:
        y = b_r + (b_x + b_b) * b_g
    else:
        y = (b_r + b_x) + b_b
    tl.store(out_ptr + o, y.to(tl.bfloat16), mask=m)


@triton.jit(do_not_specialize=["rows"])
def _flat_kernel(res_ptr, x_ptr, b_ptr, g_ptr, out_ptr, rows, MODE: tl.constexpr,
                 DIM: tl.constexpr, BLOCK: tl.constexpr, INT64: tl.constexpr,
                 PDL: tl.constexpr = False):
    """One BLOCK-element run of the flattened (rows, DIM) tensors per program. MODE:
    1 r + x·g, 3 (r + x) + b with b indexed by offset % DIM (always in bounds: no
    mask). The width is a constexpr (a model constant: one compile per width): the
    bias index is then a multiply-shift instead of an integer division, and the size
    ``rows·DIM`` carries DIM's power-of-two factor, so for widths divisible by 8 the
    mask is constant over 8-element runs and the loads stay 16-byte vectors. INT64:
    offsets past int32."""
    enter_dependent_launch(PDL)
    _flat_run(tl.program_id(0), res_ptr, x_ptr, b_ptr, g_ptr, out_ptr, rows, DIM, MODE=MODE,
              BLOCK=BLOCK, INT64=INT64, MASKED=True)


@triton.jit
def _flat_run(pid, res_ptr, x_ptr, b_ptr, g_ptr, out_ptr, rows, width, MODE: tl.constexpr,
              BLOCK: tl.constexpr, INT64: tl.constexpr, MASKED: tl.constexpr):
    """Program ``pid``'s run of ``_flat_kernel`` (``width``: its DIM; MASKED False: no
    tail mask, for sizes that are whole runs; benchmarks/tune_gates.py times both)."""
    if INT64:
        pid = pid.to(tl.int64)
        rows = rows.to(tl.int64)
    o = pid * BLOCK + tl.arange(0, BLOCK)
    m = o < rows * width if MASKED else None
    b_r = tl.load(res_ptr + o, mask=m).to(tl.float32)
    b_x = tl.load(x_ptr + o, mask=m).to(tl.float32)
    if MODE == 1:
        y = b_r + b_x * tl.load(g_ptr + o, mask=m).to(tl.float32)
    else:
        y = (b_r + b_x) + tl.load(b_ptr + o % width).to(tl.float32)
    tl.store(out_ptr + o, y.to(tl.bfloat16), mask=m)


@triton.jit(do_not_specialize=["v_rows", "a_rows", "u_rows", "n_v", "n_a"])
def _joint3_kernel(
    v_res, v_x, v_b, v_g, v_gs, v_out, a_res, a_x, a_b, a_g, a_out, u_res, u_x, u_out,
    v_rows, v_dim, a_rows, a_dim, u_rows, u_dim, n_v, n_a,
    V_FP8: tl.constexpr, A_BIAS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """Programs [0, n_v): video tiles; [n_v, n_v + n_a): action; the rest: und."""
    enter_dependent_launch(PDL)
    pid = tl.program_id(0)
    if pid < n_v:
        _segment_tile(pid, v_res, v_x, v_b, v_g, v_gs, v_out, v_rows, v_dim, MODE=2,
                      GATE_FP8=V_FP8, BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)
    elif pid < n_v + n_a:
        _segment_tile(pid - n_v, a_res, a_x, a_b, a_g, None, a_out, a_rows, a_dim,
                      MODE=2 if A_BIAS else 1, GATE_FP8=False, BLOCK_R=BLOCK_R,
                      BLOCK_C=BLOCK_C)
    else:
        _segment_tile(pid - n_v - n_a, u_res, u_x, None, None, None, u_out, u_rows, u_dim,
                      MODE=0, GATE_FP8=False, BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C)


def _tile(*dims):
    """(BLOCK_R, BLOCK_C, num_warps): 2048-element tiles, up to 256 columns, 4 warps
    (16 elements = two 16-byte bf16 vectors per thread and tensor)."""
    block_c = min(_MAX_BLOCK_C, next_power_of_2(max(dims)))
    return _TILE // block_c, block_c, 4


def _n_tiles(rows, dim, block_r, block_c):
    return cdiv(rows, block_r) * cdiv(dim, block_c)


class FlatConfig(NamedTuple):
    """Launch of ``_flat_kernel``: elements per program, warps, int64 offsets."""
    block: int
    num_warps: int
    int64: bool


def flat_config(rows, dim):
    """The single-segment launch rule, measured on H200 (benchmarks/tune_gates.py):
    1024 elements and 4 warps per program at every size (smaller blocks gain at most
    0.05 us at 10 rows and lose up to 0.35 us at 512 rows; a no-mask variant for sizes
    the block divides measured within the noise, so every launch is masked). int32
    offsets while the padded grid, ``cdiv(n, block)·block`` elements, stays below
    2^31: every offset and the size ``rows·dim`` of the mask then fit (a wrapped
    offset in the masked tail would pass the mask)."""
    padded = cdiv(rows * dim, _FLAT_BLOCK) * _FLAT_BLOCK
    return FlatConfig(_FLAT_BLOCK, _FLAT_WARPS, padded > _INT32_MAX)


def _launch_single(residual, x, bias, gate, out, mode, cfg=None):
    """``cfg``: a FlatConfig instead of the rule's (tests of the switches)."""
    rows, dim = residual.shape
    cfg = cfg or flat_config(rows, dim)
    with device_guard(residual):
        _flat_kernel[(cdiv(rows * dim, cfg.block),)](
            residual, x, bias, gate, out, rows, MODE=mode, DIM=dim, BLOCK=cfg.block,
            INT64=cfg.int64, num_warps=cfg.num_warps, enable_fp_fusion=False,
            **dependent_launch(residual.device),
        )


def _launch_joint3(v, a, u, v_fp8):
    """v = (res, x, bias, gate, gate_scale, out); a = (res, x, bias or None, gate, out);
    u = (res, x, out)."""
    (vr, vx, vb, vg, vgs, vo), (ar, ax, ab, ag, ao), (ur, ux, uo) = v, a, u
    block_r, block_c, num_warps = _tile(vr.shape[1], ar.shape[1], ur.shape[1])
    n_v = _n_tiles(*vr.shape, block_r, block_c)
    n_a = _n_tiles(*ar.shape, block_r, block_c)
    n_u = _n_tiles(*ur.shape, block_r, block_c)
    with device_guard(vr):
        _joint3_kernel[(n_v + n_a + n_u,)](
            vr, vx, vb, vg, vgs, vo, ar, ax, ab, ag, ao, ur, ux, uo,
            vr.shape[0], vr.shape[1], ar.shape[0], ar.shape[1], ur.shape[0], ur.shape[1],
            n_v, n_a, V_FP8=v_fp8, A_BIAS=ab is not None, BLOCK_R=block_r, BLOCK_C=block_c,
            num_warps=num_warps, enable_fp_fusion=False, **dependent_launch(vr.device),
        )


# ----------------------------------------------------------------------------
# Checks shared by the wrappers and the fakes
# ----------------------------------------------------------------------------




def _check_like(t, name, residual, res_name):
    if t.shape != residual.shape:
        raise RuntimeError(f"{name} must have the same shape as {res_name} "
                           f"{tuple(residual.shape)}, got {tuple(t.shape)}")


def _check_bias(b, name, residual):
    check_shape(b, name, (residual.shape[1],), f"{name} must have shape (dim,) = "
                f"({residual.shape[1]},)")


def _check_segment(prefix, residual, x, bias=None, gate=None, out=None, gate_fp8=None,
                   gate_scale=None, *, dtypes=True):
    """One segment: residual (rows, dim) even dim; x / gate / out like it; bias (dim,)."""
    res_name = f"{prefix}residual"
    named = [(res_name, residual), (f"{prefix}x", x)]
    if bias is not None:
        named.append((f"{prefix}bias", bias))
    if gate is not None:
        named.append((f"{prefix}gate", gate))
    if dtypes:
        for name, t in named:
            check_tensor(t, name, _BF16)
        if gate_fp8 is not None:
            check_tensor(gate_fp8, f"{prefix}gate_fp8", _FP8)
            check_tensor(gate_scale, f"{prefix}gate_scale", _FP32)
        if out is not None:
            check_tensor(out, f"{prefix}out", _BF16)
    check_rows_even_dim(residual, res_name)
    _check_like(x, f"{prefix}x", residual, res_name)
    if gate is not None:
        _check_like(gate, f"{prefix}gate", residual, res_name)
    if bias is not None:
        _check_bias(bias, f"{prefix}bias", residual)
    if gate_fp8 is not None:
        _check_like(gate_fp8, f"{prefix}gate_fp8", residual, res_name)
        named.append((f"{prefix}gate_fp8", gate_fp8))
        if gate_scale.numel() != 1:
            raise RuntimeError(f"{prefix}gate_scale must be a scalar tensor (one element), "
                               f"got {gate_scale.numel()}")
        named.append((f"{prefix}gate_scale", gate_scale))
    if out is not None:
        _check_like(out, f"{prefix}out", residual, res_name)
        named.append((f"{prefix}out", out))
    return named


def _check_out(prefix, out, residual, named):
    """The ``out`` part of ``_check_segment`` for a segment whose inputs already passed:
    ``named`` (its return value) plus ``out``."""
    check_tensor(out, f"{prefix}out", _BF16)
    _check_like(out, f"{prefix}out", residual, f"{prefix}residual")
    return named + [(f"{prefix}out", out)]


def _same_device_all(named):
    try:
        check_same_device(named)
    except RuntimeError as e:
        raise RuntimeError(f"all tensors must be on the same CUDA device: {e}") from None


# ----------------------------------------------------------------------------
# Ops (out-variant, void) + fakes for torch.compile
# ----------------------------------------------------------------------------


@torch.library.custom_op(add_op_namespace_prefix("gate_residual_bf16"), mutates_args=("out",))
def _gate_residual_op(residual: torch.Tensor, x: torch.Tensor, gate: torch.Tensor,
                      out: torch.Tensor) -> None:
    _launch_single(residual, x, None, gate, out, 1)


@torch.library.register_fake(add_op_namespace_prefix("gate_residual_bf16"))
def _gate_residual_fake(residual, x, gate, out):
    _check_segment("", residual, x, gate=gate, out=out, dtypes=False)


@torch.library.custom_op(add_op_namespace_prefix("bias_residual_bf16"), mutates_args=("out",))
def _bias_residual_op(residual: torch.Tensor, x: torch.Tensor, bias: torch.Tensor,
                      out: torch.Tensor) -> None:
    _launch_single(residual, x, bias, None, out, 3)


@torch.library.register_fake(add_op_namespace_prefix("bias_residual_bf16"))
def _bias_residual_fake(residual, x, bias, out):
    _check_segment("", residual, x, bias=bias, out=out, dtypes=False)


@torch.library.custom_op(add_op_namespace_prefix("joint3_bias_gate_residual_bf16"),
                         mutates_args=("v_out", "a_out", "u_out"))
def _joint3_bias_op(v_residual: torch.Tensor, v_x: torch.Tensor, v_bias: torch.Tensor,
                    v_gate: torch.Tensor, v_out: torch.Tensor, a_residual: torch.Tensor,
                    a_x: torch.Tensor, a_bias: torch.Tensor, a_gate: torch.Tensor,
                    a_out: torch.Tensor, u_residual: torch.Tensor, u_x: torch.Tensor,
                    u_out: torch.Tensor) -> None:
    _launch_joint3((v_residual, v_x, v_bias, v_gate, None, v_out),
                   (a_residual, a_x, a_bias, a_gate, a_out), (u_residual, u_x, u_out), False)


@torch.library.register_fake(add_op_namespace_prefix("joint3_bias_gate_residual_bf16"))
def _joint3_bias_fake(v_residual, v_x, v_bias, v_gate, v_out, a_residual, a_x, a_bias, a_gate,
                      a_out, u_residual, u_x, u_out):
    _check_segment("v_", v_residual, v_x, v_bias, v_gate, v_out, dtypes=False)
    _check_segment("a_", a_residual, a_x, a_bias, a_gate, a_out, dtypes=False)
    _check_segment("u_", u_residual, u_x, out=u_out, dtypes=False)


@torch.library.custom_op(add_op_namespace_prefix("joint3_bias_gate_residual_action_nobias_bf16"),
                         mutates_args=("v_out", "a_out", "u_out"))
def _joint3_nobias_op(v_residual: torch.Tensor, v_x: torch.Tensor, v_bias: torch.Tensor,
                      v_gate: torch.Tensor, v_out: torch.Tensor, a_residual: torch.Tensor,
                      a_x: torch.Tensor, a_gate: torch.Tensor, a_out: torch.Tensor,
                      u_residual: torch.Tensor, u_x: torch.Tensor, u_out: torch.Tensor) -> None:
    _launch_joint3((v_residual, v_x, v_bias, v_gate, None, v_out),
                   (a_residual, a_x, None, a_gate, a_out), (u_residual, u_x, u_out), False)


@torch.library.register_fake(
    add_op_namespace_prefix("joint3_bias_gate_residual_action_nobias_bf16"))
def _joint3_nobias_fake(v_residual, v_x, v_bias, v_gate, v_out, a_residual, a_x, a_gate, a_out,
                        u_residual, u_x, u_out):
    _check_segment("v_", v_residual, v_x, v_bias, v_gate, v_out, dtypes=False)
    _check_segment("a_", a_residual, a_x, None, a_gate, a_out, dtypes=False)
    _check_segment("u_", u_residual, u_x, out=u_out, dtypes=False)


@torch.library.custom_op(add_op_namespace_prefix("joint3_bias_fp8_gate_residual_bf16"),
                         mutates_args=("v_out", "a_out", "u_out"))
def _joint3_fp8_op(v_residual: torch.Tensor, v_x: torch.Tensor, v_bias: torch.Tensor,
                   v_gate_fp8: torch.Tensor, v_gate_scale: torch.Tensor, v_out: torch.Tensor,
                   a_residual: torch.Tensor, a_x: torch.Tensor, a_bias: torch.Tensor,
                   a_gate: torch.Tensor, a_out: torch.Tensor, u_residual: torch.Tensor,
                   u_x: torch.Tensor, u_out: torch.Tensor) -> None:
    _launch_joint3((v_residual, v_x, v_bias, v_gate_fp8, v_gate_scale, v_out),
                   (a_residual, a_x, a_bias, a_gate, a_out), (u_residual, u_x, u_out), True)


@torch.library.register_fake(add_op_namespace_prefix("joint3_bias_fp8_gate_residual_bf16"))
def _joint3_fp8_fake(v_residual, v_x, v_bias, v_gate_fp8, v_gate_scale, v_out, a_residual, a_x,
                     a_bias, a_gate, a_out, u_residual, u_x, u_out):
    _check_segment("v_", v_residual, v_x, v_bias, None, v_out, v_gate_fp8, v_gate_scale,
                   dtypes=False)
    _check_segment("a_", a_residual, a_x, a_bias, a_gate, a_out, dtypes=False)
    _check_segment("u_", u_residual, u_x, out=u_out, dtypes=False)


@torch.library.custom_op(
    add_op_namespace_prefix("joint3_bias_fp8_gate_residual_action_nobias_bf16"),
    mutates_args=("v_out", "a_out", "u_out"))
def _joint3_fp8_nobias_op(v_residual: torch.Tensor, v_x: torch.Tensor, v_bias: torch.Tensor,
                          v_gate_fp8: torch.Tensor, v_gate_scale: torch.Tensor,
                          v_out: torch.Tensor, a_residual: torch.Tensor, a_x: torch.Tensor,
                          a_gate: torch.Tensor, a_out: torch.Tensor, u_residual: torch.Tensor,
                          u_x: torch.Tensor, u_out: torch.Tensor) -> None:
    _launch_joint3((v_residual, v_x, v_bias, v_gate_fp8, v_gate_scale, v_out),
                   (a_residual, a_x, None, a_gate, a_out), (u_residual, u_x, u_out), True)


@torch.library.register_fake(
    add_op_namespace_prefix("joint3_bias_fp8_gate_residual_action_nobias_bf16"))
def _joint3_fp8_nobias_fake(v_residual, v_x, v_bias, v_gate_fp8, v_gate_scale, v_out,
                            a_residual, a_x, a_gate, a_out, u_residual, u_x, u_out):
    _check_segment("v_", v_residual, v_x, v_bias, None, v_out, v_gate_fp8, v_gate_scale,
                   dtypes=False)
    _check_segment("a_", a_residual, a_x, None, a_gate, a_out, dtypes=False)
    _check_segment("u_", u_residual, u_x, out=u_out, dtypes=False)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def _alloc(out, residual):
    return torch.empty_like(residual) if out is None else out


def gate_residual_bf16(residual: torch.Tensor, x: torch.Tensor, gate: torch.Tensor,
                       out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out = bf16(residual + x·gate)`` elementwise; ``out`` may be ``residual`` (in place)."""
    named = _check_segment("", residual, x, gate=gate)
    out = _alloc(out, residual)
    named = _check_out("", out, residual, named)
    check_same_device(named)
    if launch_directly(residual):
        _launch_single(residual, x, None, gate, out, 1)
    else:
        _gate_residual_op(residual, x, gate, out)
    return out


def bias_residual_bf16(residual: torch.Tensor, x: torch.Tensor, bias: torch.Tensor,
                       out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out = bf16((residual + x) + bias[col])``; ``out`` may be ``residual`` (in place)."""
    named = _check_segment("", residual, x, bias=bias)
    out = _alloc(out, residual)
    named = _check_out("", out, residual, named)
    check_same_device(named)
    if launch_directly(residual):
        _launch_single(residual, x, bias, None, out, 3)
    else:
        _bias_residual_op(residual, x, bias, out)
    return out


def _joint3_prepare(v, a, u, v_fp8):
    """Validate every input of the three segments, then allocate and validate outputs."""
    vr, vx, vb, vg, vgs, vo = v
    ar, ax, ab, ag, ao = a
    ur, ux, uo = u
    gate_kw = {"gate_fp8": vg, "gate_scale": vgs} if v_fp8 else {"gate": vg}
    named_v = _check_segment("v_", vr, vx, vb, **gate_kw)
    named_a = _check_segment("a_", ar, ax, ab, ag)
    named_u = _check_segment("u_", ur, ux)
    vo, ao, uo = _alloc(vo, vr), _alloc(ao, ar), _alloc(uo, ur)
    named = (_check_out("v_", vo, vr, named_v) + _check_out("a_", ao, ar, named_a)
             + _check_out("u_", uo, ur, named_u))
    if v_fp8:
        _same_device_all(named)
    else:
        check_same_device(named)
    return vo, ao, uo


def _joint3(v, a, u, v_fp8, op):
    vo, ao, uo = _joint3_prepare(v, a, u, v_fp8)
    v, a, u = v[:-1] + (vo,), a[:-1] + (ao,), u[:-1] + (uo,)
    if launch_directly(v[0]):
        _launch_joint3(v, a, u, v_fp8)
    else:
        args = [t for t in v if t is not None] + [t for t in a if t is not None] + list(u)
        op(*args)
    return vo, ao, uo


def joint3_bias_gate_residual_bf16(
    v_residual, v_x, v_bias, v_gate, a_residual, a_x, a_bias, a_gate, u_residual, u_x,
    v_out=None, a_out=None, u_out=None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """v: bf16(r + (x + b)·g); a: bf16(r + (x + b)·g); u: bf16(r + x). Returns (v_out, a_out, u_out)."""
    return _joint3((v_residual, v_x, v_bias, v_gate, None, v_out),
                   (a_residual, a_x, a_bias, a_gate, a_out), (u_residual, u_x, u_out), False,
                   _joint3_bias_op)


def joint3_bias_gate_residual_action_nobias_bf16(
    v_residual, v_x, v_bias, v_gate, a_residual, a_x, a_gate, u_residual, u_x,
    v_out=None, a_out=None, u_out=None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """v: bf16(r + (x + b)·g); a: bf16(r + x·g); u: bf16(r + x)."""
    return _joint3((v_residual, v_x, v_bias, v_gate, None, v_out),
                   (a_residual, a_x, None, a_gate, a_out), (u_residual, u_x, u_out), False,
                   _joint3_nobias_op)


def joint3_bias_fp8_gate_residual_bf16(
    v_residual, v_x, v_bias, v_gate_fp8, v_gate_scale, a_residual, a_x, a_bias, a_gate,
    u_residual, u_x, v_out=None, a_out=None, u_out=None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """v gate = float(v_gate_fp8)·v_gate_scale (fp32), then as joint3_bias_gate_residual_bf16."""
    return _joint3((v_residual, v_x, v_bias, v_gate_fp8, v_gate_scale, v_out),
                   (a_residual, a_x, a_bias, a_gate, a_out), (u_residual, u_x, u_out), True,
                   _joint3_fp8_op)


def joint3_bias_fp8_gate_residual_action_nobias_bf16(
    v_residual, v_x, v_bias, v_gate_fp8, v_gate_scale, a_residual, a_x, a_gate, u_residual, u_x,
    v_out=None, a_out=None, u_out=None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FP8 video gate; a: bf16(r + x·g); u: bf16(r + x)."""
    return _joint3((v_residual, v_x, v_bias, v_gate_fp8, v_gate_scale, v_out),
                   (a_residual, a_x, None, a_gate, a_out), (u_residual, u_x, u_out), True,
                   _joint3_fp8_nobias_op)
