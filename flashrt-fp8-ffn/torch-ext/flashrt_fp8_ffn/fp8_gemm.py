"""FP8 E4M3 GEMM core with fused epilogues (spec gemm-quant.md §0.2, §1, §2).

``out[m, n] = epilogue(s_a * s_w * sum_k f32(A[m, k]) * f32(W[n, k]))`` with A
``[M, K]`` and the weight ``[N, K]`` row-major (nn.Linear layout, K-major: the
natural B operand of a tensor-core dot). One Triton kernel serves every FP8
op of the package; constexpr flags pick the epilogue, applied to the fp32
accumulator while it is still in registers:

* ``EPI_NONE``        ``bf16(s * acc)``
* ``EPI_BIAS``        ``bf16(s * acc + f32(b))``                 (one rounding)
* ``EPI_BIAS_ROUNDED`` ``bf16(f32(bf16(s * acc)) + f32(b))``     (v1 tail: two)
* ``EPI_GELU_QUANT``  ``h = bf16(s * acc)`` stored, then ``Q8(G(f32(h) + f32(b)), s_out)``
* ``GATED``           merged ``[gate; up]`` weight ``[2H, K]``: one program computes
                      gate columns ``j`` and up columns ``H + j`` of the same rows,
                      stores both as bf16 and ``Q8(act(f32(g)) * f32(u), s_out)``.

Determinism (the spec's bit-exact equalities): the launch configuration is a
pure function of ``(M, N_total, K)`` and the device (no autotuning), every
output element is reduced over K in the same order whatever the epilogue, and
the gated kernel uses the staged GEMM's configuration for the merged width, so
fused == staged and BF16-entry == FP8-entry hold bit for bit.

Accumulation policy: on sm_90 Triton's FP8 ``tl.dot`` keeps partial sums in the
tensor core's reduced-precision accumulator unless told to promote them
(``max_num_imprecise_acc``, default 2**30 = never). We promote after every
32-wide K step (one wgmma instruction), i.e. full fp32 accumulation, which is
what the fp32 fake-quant reference assumes (see CARD.md for the trade-off).

This file is shared verbatim by flashrt-fp8-ffn and flashrt-fp8-swiglu-ffn
(packages cannot import each other).
"""

import functools

import torch
import triton
import triton.language as tl

from ._helpers import gelu_tanh, quantize_fp8_e4m3, silu
from ._host import check_same_device, check_tensor, device_guard

FP8 = torch.float8_e4m3fn
BF16 = torch.bfloat16
FP32 = torch.float32

EPI_NONE = 0
EPI_BIAS = 1
EPI_BIAS_ROUNDED = 2
EPI_GELU_QUANT = 3
ACT_SILU = 1
ACT_GELU = 2

# Products summed in the tensor core before promotion to the fp32 accumulator.
# 32 = one Hopper FP8 wgmma K step: full fp32 accumulation.
IMPRECISE_ACC = 32


# ----------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------


@triton.jit(do_not_specialize=["M"])
def _fp8_gemm_kernel(
    a_ptr, w_ptr, sa_ptr, sw_ptr, bias_ptr, so_ptr, c_ptr, q_ptr,
    M, N, K, ldc,
    EPI: tl.constexpr, GATED: tl.constexpr, ACT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, EVEN_K: tl.constexpr, IMPRECISE: tl.constexpr,
):
    """One BLOCK_M x BLOCK_N output tile per program (grouped order for L2 reuse).

    N is the number of output columns computed (H when GATED; the up rows of
    the merged weight start at row N). Loads clamp row indices (``% M``,
    ``% N``) instead of masking them, so only the K tail is ever masked.
    """
    i_p = tl.program_id(0)
    n_m = tl.cdiv(M, BLOCK_M)
    n_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * n_n
    first_m = (i_p // per_group) * GROUP_M
    size_m = tl.minimum(n_m - first_m, GROUP_M)
    i_m = first_m + (i_p % per_group) % size_m
    i_n = (i_p % per_group) // size_m

    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_k = tl.arange(0, BLOCK_K)
    r_m = (o_m % M).to(tl.int64)
    r_n = o_n % N
    p_a = a_ptr + r_m[:, None] * K + o_k[None, :]
    p_w = w_ptr + r_n.to(tl.int64)[None, :] * K + o_k[:, None]  # W^T tile [BLOCK_K, BLOCK_N]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if GATED:
        p_u = w_ptr + (r_n + N).to(tl.int64)[None, :] * K + o_k[:, None]
        acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        if EVEN_K:
            b_a = tl.load(p_a)
            b_w = tl.load(p_w)
        else:
            m_k = o_k < K - k
            b_a = tl.load(p_a, mask=m_k[None, :], other=0.0)
            b_w = tl.load(p_w, mask=m_k[:, None], other=0.0)
        acc = tl.dot(b_a, b_w, acc, max_num_imprecise_acc=IMPRECISE)
        if GATED:
            if EVEN_K:
                b_u = tl.load(p_u)
            else:
                b_u = tl.load(p_u, mask=m_k[:, None], other=0.0)
            acc_u = tl.dot(b_a, b_u, acc_u, max_num_imprecise_acc=IMPRECISE)
            p_u += BLOCK_K
        p_a += BLOCK_K
        p_w += BLOCK_K

    s = tl.load(sa_ptr).to(tl.float32) * tl.load(sw_ptr).to(tl.float32)
    m_c = (o_m < M)[:, None] & (o_n < N)[None, :]
    o_row = o_m.to(tl.int64)[:, None]
    o_c = o_row * ldc + o_n[None, :]
    if GATED:
        b_g = (acc * s).to(tl.bfloat16)
        b_u16 = (acc_u * s).to(tl.bfloat16)
        tl.store(c_ptr + o_c, b_g, mask=m_c)
        tl.store(c_ptr + o_c + N, b_u16, mask=m_c)
        g = b_g.to(tl.float32)
        if ACT == 1:
            act = silu(g)
        else:
            act = gelu_tanh(g)
        inv = tl.div_rn(1.0, tl.load(so_ptr).to(tl.float32))
        q = quantize_fp8_e4m3(act * b_u16.to(tl.float32), inv)
        tl.store(q_ptr + o_row * N + o_n[None, :], q, mask=m_c)
    else:
        y = acc * s
        if EPI == 3:
            h = y.to(tl.bfloat16)
            tl.store(c_ptr + o_c, h, mask=m_c)
            b = tl.load(bias_ptr + r_n).to(tl.float32)[None, :]
            inv = tl.div_rn(1.0, tl.load(so_ptr).to(tl.float32))
            q = quantize_fp8_e4m3(gelu_tanh(h.to(tl.float32) + b), inv)
            tl.store(q_ptr + o_row * N + o_n[None, :], q, mask=m_c)
        else:
            if EPI == 1:
                y = y + tl.load(bias_ptr + r_n).to(tl.float32)[None, :]
            if EPI == 2:
                y = y.to(tl.bfloat16).to(tl.float32) + tl.load(bias_ptr + r_n).to(tl.float32)[None, :]
            tl.store(c_ptr + o_c, y.to(tl.bfloat16), mask=m_c)


@triton.jit(do_not_specialize=["M", "P"])
def _quantize_input_kernel(x_ptr, s_ptr, out_ptr, M, P, K,
                           BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """input_fp8[m] = Q8(f32(x[m]), s) for m < M; FP8 zero for M <= m < P."""
    o_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    o_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    m_k = (o_k < K)[None, :]
    o = o_r[:, None] * K + o_k[None, :]
    b_x = tl.load(x_ptr + o, mask=(o_r < M)[:, None] & m_k, other=0.0).to(tl.float32)
    inv = tl.div_rn(1.0, tl.load(s_ptr).to(tl.float32))
    q = quantize_fp8_e4m3(b_x, inv)  # masked (pad) rows load 0 -> code 0x00
    tl.store(out_ptr + o, q, mask=(o_r < P)[:, None] & m_k)


# ----------------------------------------------------------------------------
# Launch configuration: one analytic config per (M, N, K, device), no autotune
# ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _sm_count(device):
    if device.type != "cuda":
        return 4  # interpreter: split N a little so CPU tests cover several tiles
    return torch.cuda.get_device_properties(device).multi_processor_count


@functools.lru_cache(maxsize=4096)
def gemm_config(M, N, K, device):
    """(BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages) by M bucket.

    Small M (decode rows) is weight-streaming bound: the N split is halved
    (down to 16 columns) until the grid covers every SM. Large M uses
    128 x 128 x 128 tiles (8 warps), the usual Hopper FP8 shape. N is the
    *total* weight rows (2H for a merged gate/up weight), so the gated kernel
    and the staged GEMM of the same weight use the same configuration.
    """
    if M <= 16:
        bm, warps, stages = 16, 4, 4
    elif M <= 64:
        bm, warps, stages = 32, 4, 4
    elif M <= 256:
        bm, warps, stages = 64, 4, 4
    else:
        bm, warps, stages = 128, 8, 3
    bn, bk = 128, 128
    if M <= 256:
        sms = _sm_count(device)
        while bn > 16 and triton.cdiv(M, bm) * triton.cdiv(N, bn) < sms:
            bn //= 2
    return bm, bn, bk, 8, warps, stages


def launch_fp8_gemm(a, w, sa, sw, c, *, bias=None, so=None, q=None, epi=EPI_NONE, act=0):
    """c (and q) <- epilogue(A @ W^T). ``act`` != 0 selects the gated kernel."""
    M, K = a.shape
    n_total = w.shape[0]
    gated = act != 0
    N = n_total // 2 if gated else n_total
    bm, bn, bk, group, warps, stages = gemm_config(M, n_total, K, a.device)
    grid = (triton.cdiv(M, bm) * triton.cdiv(N, bn),)
    with device_guard(a):
        _fp8_gemm_kernel[grid](
            a, w, sa, sw, sa if bias is None else bias, sa if so is None else so, c,
            c if q is None else q, M, N, K, c.shape[1],
            EPI=epi, GATED=gated, ACT=act, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
            GROUP_M=group, EVEN_K=K % bk == 0, IMPRECISE=IMPRECISE_ACC,
            num_warps=warps, num_stages=stages,
        )


def launch_quantize_input(x, sx, input_fp8):
    M, K = x.shape
    P = input_fp8.shape[0]
    block_k = min(1024, triton.next_power_of_2(K))
    block_r = max(1, 2048 // block_k)
    grid = (triton.cdiv(P, block_r), triton.cdiv(K, block_k))
    with device_guard(x):
        _quantize_input_kernel[grid](x, sx, input_fp8, M, P, K, BLOCK_R=block_r,
                                     BLOCK_K=block_k, num_warps=4)


# ----------------------------------------------------------------------------
# Validation helpers (spec phrases; RuntimeError unless the spec says ValueError)
# ----------------------------------------------------------------------------


def check_matrix(t, name, dtype):
    check_tensor(t, name, dtype)
    if t.dim() != 2:
        raise RuntimeError(f"{name} must be 2-D, got {t.dim()} dimensions")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise RuntimeError(f"{name} dimensions must be non-zero, got {tuple(t.shape)}")


def check_scale(t, name):
    check_tensor(t, name, FP32)
    if t.numel() != 1:
        raise RuntimeError(f"{name} must contain exactly one value, got {t.numel()}")


def check_bias(b, name, n, what):
    check_tensor(b, name, BF16)
    if b.dim() != 1 or b.shape[0] != n:
        raise RuntimeError(f"{name} length must match {what}, got shape {tuple(b.shape)} "
                           f"for {n}")


def check_out(t, name, dtype, shape, what):
    check_tensor(t, name, dtype)
    if tuple(t.shape) != tuple(shape):
        raise RuntimeError(f"{what}, got {tuple(t.shape)}")


def same_device(*named):
    check_same_device([(n, t) for n, t in named if t is not None])


def padded_rows(x, pad_to, input_fp8):
    """P of spec §1.3: pad_to if given; else the rows of a passed input_fp8; else
    the default (NVIDIA Thor, sm_110, pads 9 <= M <= 128 to a multiple of 64;
    everywhere else P = M)."""
    M = x.shape[0]
    if pad_to is not None:
        if isinstance(pad_to, bool) or not isinstance(pad_to, (int, torch.SymInt)):
            raise ValueError(f"pad_to must be an int or None, got {type(pad_to).__name__}")
        if pad_to < M:
            raise ValueError(f"pad_to must be >= input.shape[0], got pad_to={pad_to} for M={M}")
        return pad_to
    if input_fp8 is not None and input_fp8.dim() == 2:
        if input_fp8.shape[0] < M:
            raise ValueError("all scratch outputs must use input_fp8.shape[0] padded rows, "
                             f"and input_fp8 must have >= input.shape[0] = {M} rows, "
                             f"got {input_fp8.shape[0]}")
        return input_fp8.shape[0]
    if (x.device.type == "cuda" and getattr(torch.version, "hip", None) is None
            and torch.cuda.get_device_capability(x.device) == (11, 0)):
        if 9 <= M <= 128:
            return (M + 63) // 64 * 64
    return M


def check_padded(P, named):
    """Every passed scratch buffer of a BF16-entry call must have P rows."""
    for name, t in named:
        if t is not None and (t.dim() != 2 or t.shape[0] != P):
            raise ValueError(f"all scratch outputs must use input_fp8.shape[0] padded rows: "
                             f"{name} has shape {tuple(t.shape)}, expected {P} rows")

