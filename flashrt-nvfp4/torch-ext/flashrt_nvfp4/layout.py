"""NVFP4 scale layout (spec: gemm-quant.md §0.3, §5).

* ``nvfp4_sf_swizzled_bytes``      pure Python: bytes of the swizzled buffer
* ``nvfp4_sf_linear_to_swizzled``  byte permutation linear [rows, D/16] -> swizzled

Swizzle (CUTLASS Sm1xx block-scaled 128x4 super-tiles): the byte of logical
scale (r, c) lives at
``((r // 128) * ceil(nb/4) + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4``.
Padding bytes (rows up to the 128 boundary, columns up to the multiple of 4)
are never written: a wrapper-allocated buffer is zero-filled, a caller's
buffer keeps what it had.
"""

from typing import Optional

import torch
import triton
import triton.language as tl

from ._host import cdiv, check_same_device, check_tensor, device_guard, launch_directly
from ._ops import add_op_namespace_prefix
from .nvfp4_codec import swizzled_offset

_U8 = torch.uint8
_BLOCK_R = 32
_BLOCK_C = 32


@triton.jit(do_not_specialize=["rows"])
def _sf_linear_to_swizzled_kernel(
    src_ptr, out_ptr, rows, nb, n_col_super,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """One [BLOCK_R, BLOCK_C] tile of the linear scale matrix, scattered."""
    o_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    o_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    m = (o_r < rows)[:, None] & (o_c < nb)[None, :]
    b_s = tl.load(src_ptr + o_r[:, None] * nb + o_c[None, :], mask=m)
    tl.store(out_ptr + swizzled_offset(o_r[:, None], o_c[None, :], n_col_super), b_s, mask=m)


def nvfp4_sf_swizzled_bytes(rows: int, D: int) -> int:
    """Bytes of the swizzled scale buffer for ``rows`` x ``D`` FP4 elements:
    ``ceil(rows/128) * ceil((D/16)/4) * 512``."""
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    if D <= 0 or D % 16 != 0:
        raise ValueError(f"D must be positive and divisible by 16, got {D}")
    return -(-rows // 128) * -(-(D // 16) // 4) * 512


def _check_op_args(scales, out, D):
    """The op's checks (RuntimeError), shared by the wrapper and the fake."""
    if scales.dim() != 2:
        raise RuntimeError(f"scales must be 2-D [rows, D/16], got {scales.dim()} dimensions")
    if scales.numel() == 0:
        raise RuntimeError("scales must be non-empty (dimensions must be non-zero)")
    if D <= 0 or D % 16 != 0:
        raise RuntimeError(f"D must be positive and divisible by 16, got {D}")
    if scales.shape[1] != D // 16:
        raise RuntimeError(f"scales.shape[1] must be D / 16 = {D // 16}, got {scales.shape[1]}")
    need = nvfp4_sf_swizzled_bytes(scales.shape[0], D)
    if out.numel() < need:
        raise RuntimeError(f"out must contain at least nvfp4_sf_swizzled_bytes(rows, D) = {need} "
                           f"bytes, got {out.numel()}")


def _launch(scales, out, D):
    rows, nb = scales.shape
    grid = (cdiv(rows, _BLOCK_R), cdiv(nb, _BLOCK_C))
    with device_guard(scales):
        _sf_linear_to_swizzled_kernel[grid](scales, out, rows, nb, cdiv(nb, 4),
                                            BLOCK_R=_BLOCK_R, BLOCK_C=_BLOCK_C, num_warps=4)


@torch.library.custom_op(add_op_namespace_prefix("nvfp4_sf_linear_to_swizzled"),
                         mutates_args=("out",))
def _nvfp4_sf_linear_to_swizzled_op(scales: torch.Tensor, out: torch.Tensor, D: int,
                                    is_sfb: bool = False) -> None:
    _check_op_args(scales, out, D)
    _launch(scales, out, D)


@torch.library.register_fake(add_op_namespace_prefix("nvfp4_sf_linear_to_swizzled"))
def _nvfp4_sf_linear_to_swizzled_fake(scales, out, D, is_sfb=False):
    _check_op_args(scales, out, D)


def nvfp4_sf_linear_to_swizzled(scales: torch.Tensor, *, is_sfb: bool = False,
                                out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Scatter linear UE4M3 scale bytes ``scales`` uint8 ``[rows, D/16]`` into the
    swizzled 128x4 layout (flat uint8, ``>= nvfp4_sf_swizzled_bytes(rows, D)``).

    ``is_sfb`` is accepted and ignored (activation and weight scales share the
    layout). ``out`` is allocated zero-filled if None; a passed ``out`` keeps
    its padding bytes. Returns ``out``.
    """
    if not isinstance(scales, torch.Tensor) or scales.dim() != 2:
        got = scales.dim() if isinstance(scales, torch.Tensor) else type(scales).__name__
        raise ValueError(f"scales must be a 2-D tensor [rows, D/16], got {got}")
    check_tensor(scales, "scales", _U8)
    D = scales.shape[1] * 16
    if scales.numel() == 0:
        raise RuntimeError("scales must be non-empty (dimensions must be non-zero)")
    if out is None:
        out = torch.zeros(nvfp4_sf_swizzled_bytes(scales.shape[0], D), dtype=_U8,
                          device=scales.device)
    check_tensor(out, "out", _U8)
    check_same_device([("scales", scales), ("out", out)])
    _check_op_args(scales, out, D)
    if launch_directly(scales):
        _launch(scales, out, D)
    else:
        _nvfp4_sf_linear_to_swizzled_op(scales, out, D, is_sfb)
    return out
