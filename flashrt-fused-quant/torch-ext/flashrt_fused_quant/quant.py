"""SiLU(gate) * up -> NVFP4 (E2M1 + swizzled UE4M3 scales) (spec: gemm-quant.md §0.3, §6).

Three public functions:

* ``nvfp4_swizzled_scale_bytes``                 pure Python: scale buffer size
* ``silu_mul_quant_nvfp4_swizzled_bf16``         gate [R, C], up [R, C]
* ``silu_mul_merged_quant_nvfp4_swizzled_bf16``  merged [R, 2C] = [gate | up] per row

One Triton kernel serves both: bf16 inputs are read as int32 words, each
holding the pair (element 2j in the low half, 2j+1 in the high half) that
packs into output byte j, so loads stay wide and packing needs no shuffle.
A program takes BLOCK_R rows x G blocks of 16 columns (8 words per block).

Per element (fp32): ``y = bf16(f32(bf16(g / (1 + exp(-g)))) * up)``; per block:
``t = amax / 6`` (IEEE division), scale byte ``e = ceil_ue4m3(t)`` (round up,
``t > 240 -> 0xFE``), ``inv = 1 / UE4M3(e)`` (0 when e = 0), code =
thresholds on ``|y * inv|`` (ties away from zero, saturating at 6, sign bit
for any negative value). Divisions are correctly rounded (``tl.div_rn``) and
exp is libdevice's on the GPU, so kernel and PyTorch reference agree bit for bit.
"""

import functools
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from ._host import (cdiv, check_same_device, check_tensor, device_guard, interpreting,
                    launch_directly, next_power_of_2)
from ._ops import add_op_namespace_prefix
from .nvfp4_codec import bf16_words, encode_blocks, swizzled_offset

_BF16 = torch.bfloat16
_U8 = torch.uint8


# ----------------------------------------------------------------------------
# Triton device helpers (the NVFP4 encode rules live in nvfp4_codec.py)
# ----------------------------------------------------------------------------


@triton.jit
def _silu_mul_bf16(g, u, LIBDEVICE_EXP: tl.constexpr):
    """bf16(f32(bf16(g / (1 + exp(-g)))) * u) as fp32; g, u fp32 (exact bf16 values)."""
    if LIBDEVICE_EXP:
        ex = libdevice.exp(-g)
    else:  # interpreter: libdevice is not available there; numpy's exp
        ex = tl.exp(-g)
    s = tl.div_rn(g, 1.0 + ex).to(tl.bfloat16).to(tl.float32)
    return (s * u).to(tl.bfloat16).to(tl.float32)


@triton.jit(do_not_specialize=["n_rows", "stride_w"])
def _silu_mul_quant_nvfp4_kernel(
    gate_ptr, up_ptr, packed_ptr, scales_ptr,
    n_rows, stride_w, n_blocks, n_col_super,
    BLOCK_R: tl.constexpr, G: tl.constexpr, LIBDEVICE_EXP: tl.constexpr,
):
    """gate/up: int32 words (bf16 pairs), row stride ``stride_w`` words; block kb
    of row r = words 8*kb .. 8*kb+7. packed: row stride 8 * n_blocks bytes."""
    i_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    i_b = tl.program_id(1) * G + tl.arange(0, G)
    o_w = tl.arange(0, 8)
    m_r = i_r < n_rows
    m_b = i_b < n_blocks
    m2 = m_r[:, None] & m_b[None, :]
    m3 = m2[:, :, None]
    o_col = i_b[None, :, None] * 8 + o_w[None, None, :]
    b_g = tl.load(gate_ptr + i_r[:, None, None] * stride_w + o_col, mask=m3, other=0)
    b_u = tl.load(up_ptr + i_r[:, None, None] * stride_w + o_col, mask=m3, other=0)

    y_lo = _silu_mul_bf16((b_g << 16).to(tl.float32, bitcast=True),
                          (b_u << 16).to(tl.float32, bitcast=True), LIBDEVICE_EXP)
    y_hi = _silu_mul_bf16((b_g & -65536).to(tl.float32, bitcast=True),
                          (b_u & -65536).to(tl.float32, bitcast=True), LIBDEVICE_EXP)
    byte, e = encode_blocks(y_lo, y_hi)  # e: [BLOCK_R, G]
    tl.store(packed_ptr + i_r[:, None, None] * (n_blocks * 8) + o_col, byte.to(tl.uint8),
             mask=m3)

    tl.store(scales_ptr + swizzled_offset(i_r[:, None], i_b[None, :], n_col_super),
             e.to(tl.uint8), mask=m2)


@functools.lru_cache(maxsize=None)
def _launch_config(rows, n_blocks):
    """(BLOCK_R, G, num_warps): about 1k words (8 KiB of gate + up) per program,
    at most 32 blocks (512 columns) of one row; small rows widen G instead."""
    g = min(32, next_power_of_2(n_blocks))
    block_r = max(1, min(next_power_of_2(rows), 128 // g))
    return block_r, g, 4


def _launch(gate_w, up_w, packed, scales, rows, cols, stride_w):
    n_blocks = cols // 16
    block_r, g, num_warps = _launch_config(min(rows, 1 << 20), n_blocks)
    grid = (cdiv(rows, block_r), cdiv(n_blocks, g))
    with device_guard(packed):
        _silu_mul_quant_nvfp4_kernel[grid](
            gate_w, up_w, packed, scales, rows, stride_w, n_blocks, cdiv(n_blocks, 4),
            BLOCK_R=block_r, G=g, LIBDEVICE_EXP=not interpreting(), num_warps=num_warps,
        )




# ----------------------------------------------------------------------------
# Checks shared by the wrappers, ops and fakes (RuntimeError, spec phrases)
# ----------------------------------------------------------------------------


def nvfp4_swizzled_scale_bytes(rows: int, cols: int) -> int:
    """Bytes of the swizzled scale buffer: ``ceil(rows/128) * ceil((cols/16)/4) * 512``."""
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    if cols <= 0 or cols % 16 != 0:
        raise ValueError(f"cols must be positive and divisible by 16, got {cols}")
    return -(-rows // 128) * -(-(cols // 16) // 4) * 512


def _check_outputs(packed, scales, rows, cols, exact_shape):
    need_p = rows * cols // 2
    if exact_shape:  # the fake (compile-time) impl wants the packed matrix itself
        if tuple(packed.shape) != (rows, cols // 2):
            raise RuntimeError(f"packed must have shape ({rows}, {cols // 2}), "
                               f"got {tuple(packed.shape)}")
    elif packed.numel() < need_p:
        raise RuntimeError(f"packed must contain at least rows * cols / 2 = {need_p} bytes, "
                           f"got {packed.numel()}")
    need_s = nvfp4_swizzled_scale_bytes(rows, cols)
    if scales.numel() < need_s:
        raise RuntimeError(f"scales must contain at least nvfp4_swizzled_scale_bytes(rows, cols)"
                           f" = {need_s} bytes, got {scales.numel()}")


def _check_split(gate, up, packed, scales, exact_shape=False):
    if gate.dim() != 2:
        raise RuntimeError(f"gate must be 2-D [rows, cols], got {gate.dim()} dimensions")
    if tuple(up.shape) != tuple(gate.shape):
        raise RuntimeError(f"up must have the same sizes as gate {tuple(gate.shape)}, "
                           f"got {tuple(up.shape)}")
    rows, cols = gate.shape
    if rows <= 0:
        raise RuntimeError("rows must be positive (dimensions must be non-zero)")
    if cols <= 0 or cols % 16 != 0:
        raise RuntimeError(f"cols must be positive and divisible by 16, got {cols}")
    if packed is not None:
        _check_outputs(packed, scales, rows, cols, exact_shape)


def _check_merged(x, packed, scales, exact_shape=False):
    if x.dim() != 2:
        raise RuntimeError(f"merged_gate_up must be 2-D [rows, 2*cols], got {x.dim()} dimensions")
    rows, width = x.shape
    if rows <= 0:
        raise RuntimeError("rows must be positive (dimensions must be non-zero)")
    if width <= 0 or width % 32 != 0:
        raise RuntimeError(
            f"merged_gate_up.shape[1] must be positive and divisible by 32, got {width}")
    if packed is not None:
        _check_outputs(packed, scales, rows, width // 2, exact_shape)


def _check_out_tensors(named_in, packed, scales):
    check_tensor(packed, "packed", _U8)
    check_tensor(scales, "scales", _U8)
    check_same_device(named_in + [("packed", packed), ("scales", scales)])


# ----------------------------------------------------------------------------
# Ops (out-variant, void) + fakes
# ----------------------------------------------------------------------------


def _launch_split(gate, up, packed, scales):
    rows, cols = gate.shape
    _launch(bf16_words(gate, "gate"), bf16_words(up, "up"), packed, scales, rows, cols, cols // 2)


def _launch_merged(x, packed, scales):
    rows, width = x.shape
    w = bf16_words(x, "merged_gate_up")
    cols = width // 2
    _launch(w, w[:, cols // 2:], packed, scales, rows, cols, width // 2)


@torch.library.custom_op(add_op_namespace_prefix("silu_mul_quant_nvfp4_swizzled_bf16"),
                         mutates_args=("packed", "scales"))
def _silu_mul_quant_op(gate: torch.Tensor, up: torch.Tensor, packed: torch.Tensor,
                       scales: torch.Tensor) -> None:
    _check_split(gate, up, packed, scales)
    _launch_split(gate, up, packed, scales)


@torch.library.register_fake(add_op_namespace_prefix("silu_mul_quant_nvfp4_swizzled_bf16"))
def _silu_mul_quant_fake(gate, up, packed, scales):
    _check_split(gate, up, packed, scales, exact_shape=True)


@torch.library.custom_op(add_op_namespace_prefix("silu_mul_merged_quant_nvfp4_swizzled_bf16"),
                         mutates_args=("packed", "scales"))
def _silu_mul_merged_quant_op(merged_gate_up: torch.Tensor, packed: torch.Tensor,
                              scales: torch.Tensor) -> None:
    _check_merged(merged_gate_up, packed, scales)
    _launch_merged(merged_gate_up, packed, scales)


@torch.library.register_fake(
    add_op_namespace_prefix("silu_mul_merged_quant_nvfp4_swizzled_bf16"))
def _silu_mul_merged_quant_fake(merged_gate_up, packed, scales):
    _check_merged(merged_gate_up, packed, scales, exact_shape=True)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def _alloc(like, rows, cols, packed, scales):
    if packed is None:
        packed = torch.empty((rows, cols // 2), dtype=_U8, device=like.device)
    if scales is None:  # zero-filled: padding bytes read as 0 (spec)
        scales = torch.zeros(nvfp4_swizzled_scale_bytes(rows, cols), dtype=_U8,
                             device=like.device)
    return packed, scales


def silu_mul_quant_nvfp4_swizzled_bf16(
    gate: torch.Tensor, up: torch.Tensor, *, packed: Optional[torch.Tensor] = None,
    scales: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """NVFP4-quantize ``SiLU(gate) * up`` (bf16 ``[R, C]``, ``C % 16 == 0``).

    Returns ``(packed, scales)``: uint8 ``[R, C/2]`` (even column in the low
    nibble) and the swizzled UE4M3 scales (flat, ``>= nvfp4_swizzled_scale_bytes(R, C)``;
    allocated zero-filled if None; padding bytes are never written).
    """
    if not isinstance(gate, torch.Tensor) or gate.dim() != 2:
        got = gate.dim() if isinstance(gate, torch.Tensor) else type(gate).__name__
        raise ValueError(f"gate must be a 2-D tensor [rows, cols], got {got}")
    check_tensor(gate, "gate", _BF16)
    check_tensor(up, "up", _BF16)
    check_same_device([("gate", gate), ("up", up)])
    _check_split(gate, up, None, None)
    packed, scales = _alloc(gate, gate.shape[0], gate.shape[1], packed, scales)
    _check_out_tensors([("gate", gate)], packed, scales)
    _check_outputs(packed, scales, gate.shape[0], gate.shape[1], False)
    if launch_directly(gate):
        _launch_split(gate, up, packed, scales)
    else:
        _silu_mul_quant_op(gate, up, packed, scales)
    return packed, scales


def silu_mul_merged_quant_nvfp4_swizzled_bf16(
    merged_gate_up: torch.Tensor, *, packed: Optional[torch.Tensor] = None,
    scales: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Same outputs as ``silu_mul_quant_nvfp4_swizzled_bf16(x[:, :C], x[:, C:])`` for
    ``merged_gate_up`` bf16 ``[R, 2C]`` (gate first in each row, ``2C % 32 == 0``)."""
    x = merged_gate_up
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] % 2 != 0:
        got = (f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor)
               else type(x).__name__)
        raise ValueError(f"merged_gate_up must be a 2-D tensor [rows, 2*cols] with an even "
                         f"width, got {got}")
    check_tensor(x, "merged_gate_up", _BF16)
    _check_merged(x, None, None)
    packed, scales = _alloc(x, x.shape[0], x.shape[1] // 2, packed, scales)
    _check_out_tensors([("merged_gate_up", x)], packed, scales)
    _check_outputs(packed, scales, x.shape[0], x.shape[1] // 2, False)
    if launch_directly(x):
        _launch_merged(x, packed, scales)
    else:
        _silu_mul_merged_quant_op(x, packed, scales)
    return packed, scales
