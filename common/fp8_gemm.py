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

Three kernels share one epilogue (and a fourth, the warp-specialized Gluon kernel of
fp8_wgmma.py, runs the TMA kernel's 128 x 128 tiles of non-gated GEMMs on sm_90 with
the same bits: ``launch_with_config``):

* ``_fp8_gemm_tma_kernel`` (M >= TMA_MIN_M = 256, K % 16 == 0): persistent, one
  program per SM walking the output tiles; A and W tiles loaded through TMA tensor
  descriptors; promotion once per 128-wide K block (``TMA_IMPRECISE_ACC``); the tile
  from a waves x tile-time model (``tma_tile``: 64 x 64 for a down projection at
  M = 512, 128 x 128 for wide weights). Non-gated GEMMs run its paired K loop (two
  blocks per step: the first block's promotion overlaps the second's wgmma), the same
  bits. Measured on H200 (graph replay): 8192^3 1202 us against 1664 for the tile
  kernel it replaces there (``torch._scaled_mm`` 891); 1.1-2.3x the tile kernel on
  the PI0.5 / SigLIP / encoder GEMMs, 0.56-0.93x ``_scaled_mm``
  (benchmarks/tune_fp8_large.py).
* ``_fp8_gemm_kernel``: one BLOCK_M x BLOCK_N output tile per program, K looped
  inside; the path for 16 < M < 256 (and for M <= 64 when the weight has enough
  column tiles to fill the GPU), and the TMA kernel's fallback (same tile, same
  bits) for operands a tensor descriptor cannot take (unaligned, K % 16 != 0).
* ``_fp8_gemm_swap_kernel`` (decode rows): the weight tile is the dot's left
  operand (``acc^T = W A^T``), so 64 weight rows fill the tensor core's M side
  and the few activation rows sit on its narrow N side. When the weight has few
  column tiles (a down projection, N = 1024), K is split over SPLIT programs per
  tile: each stores its fp32 partial in a workspace, and the last of them to
  arrive (an atomic counter per tile, reset by that program) sums the partials
  in split order and runs the epilogue. One launch, and the sum order is fixed,
  so results do not depend on which program finishes last. Measured on H100
  (graph replay, M = 10): 1024 -> 4096 4.9 us (= the tile kernel), 4096 -> 1024
  6.2 us (tile kernel 9.7, ``torch._scaled_mm`` 7.3), 16384 -> 2048 15.8 us
  (tile kernel 23.5, ``_scaled_mm`` 18.6).
  BF16 entry: the decode kernel forms ``A = Q8(x, s_x)`` in its A load (pad rows
  FP8 zero) and writes input_fp8 as it goes, so a BF16-entry FFN layer is two
  launches (up GEMM with the quantize, down GEMM), not three.

Programmatic dependent launch (sm_90+, ``uses_pdl``): the decode kernel is
launched with PDL (the tile kernel has the same hooks, used by the tuning sweep;
it was not measured faster with them at M = 64). A program first bulk-prefetches
its weight slice into L2 (a cache hint, nothing is read; weights up to
``PREFETCH_MAX_BYTES``), then waits for the previous kernel (``griddepcontrol.wait``),
then lets the next kernel launch; under CUDA-graph replay the next GEMM starts while
this one runs and its weight is on the way (``_wait_for_producers``). Right after the
wait it also reads what the epilogue needs (scales, bias: ``_epilogue_operands``), so
that round trip overlaps the K loop. Correct whatever the previous kernel wrote: every
read comes after the wait. Measured on H200 (graph replay, distinct weights per call):
PI0.5 decoder GELU FFN x 18 layers at M = 10, 233 us as three launches per layer
without PDL, 218 us as two with it (one run); 212 us for those two, 202 us with the
early epilogue reads, 272 us for the compiled ``_scaled_mm`` composition (a later
run); there, 1024 -> 4096 at M = 10 3.19 us, 4096 -> 1024 7.25 us (``_scaled_mm``
4.41 / 5.90). What is left per decode GEMM is latency, not
bytes (4 MB stream in ~1 us): the kernel boundary (the next kernel's wait returns
~0.7 us after this one ends), the K loop (the promoted FP8 dot issues one 32-wide
wgmma step at a time, ``IMPRECISE_ACC``) and, with a K split, the partials' round
trip through L2. Sweep: benchmarks/tune_fp8_decode.py.

Determinism (the spec's bit-exact equalities): the launch configuration is a
pure function of ``(M, N_total, K)`` and the device (no autotuning), every
output element is reduced over K in the same order whatever the epilogue, and
the gated kernel uses the staged GEMM's configuration for the merged width, so
fused == staged and BF16-entry == FP8-entry hold bit for bit.

Accumulation policy: on sm_90 Triton's FP8 ``tl.dot`` keeps partial sums in the
tensor core's reduced-precision accumulator unless told to promote them
(``max_num_imprecise_acc``, default 2**30 = never). Below 256 rows we promote after
every 32-wide K step (one wgmma instruction), i.e. full fp32 accumulation, which is
what the fp32 fake-quant reference assumes; decode rows are latency-bound, and at
K = 96-512 a 128-wide interval flipped 0.16% of FP8 codes against that reference.
From 256 rows, once per 128-wide K block: torch._scaled_mm's accuracy (measured the
same against fp64) at 1.2-1.7x the speed (see CARD.md for the trade-off).

The module also holds what both FP8 packages expose identically: the public
``fp8_gemm_bf16`` (op, fake, wrapper) and the linear / padded-row checks.

One source of truth: common/fp8_gemm.py, copied by `flashrt sync` into
flashrt-fp8-ffn and flashrt-fp8-swiglu-ffn (packages cannot import each other).
"""

import functools
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
from triton.tools.tensor_descriptor import TensorDescriptor

from ._helpers import (gelu_tanh, grouped_tile, prefetch_l2, quantize_fp8_e4m3, silu,
                       split_k_arrive, split_k_release)
from ._host import (SplitCounters, cdiv, check_bias, check_matrix, check_out, check_scale,
                    device_guard, launch_directly, next_power_of_2, same_device,
                    sm_count, uses_pdl)
from ._ops import add_op_namespace_prefix

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
# 32 = one Hopper FP8 wgmma K step: full fp32 accumulation (decode and tile kernels).
IMPRECISE_ACC = 32
# The TMA kernel (M >= TMA_MIN_M) promotes once per 128-wide K block, as torch._scaled_mm
# does on Hopper: against an fp64 reference the two have the same error on every shape
# measured (H200: relative L2 1.67e-3, 6.4-6.8% of outputs off the correctly rounded
# bf16, against 2.7% at 32), at 1.2-1.7x the speed of promoting every step.
TMA_IMPRECISE_ACC = 128

# L2 weight prefetch of a PDL launch only for weights up to this size: a larger one and
# the next kernel's, prefetched while it runs, overflow the 50 MB L2 (H200, 16384 -> 2048
# decode GEMM, 32 MB: 18.5 us with the prefetch, 13.9 without; 4 MB decoder GEMMs gain).
PREFETCH_MAX_BYTES = 16 << 20


# ----------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------


@triton.jit
def gated_act_mul_quant(g, u, inv_scale, ACT: tl.constexpr):
    """Q8(act(g) * u) from the fp32 values of bf16 gate / up: the one formula of the
    fused gated epilogue and of the staged ``*_mul_merged_quantize`` kernels (so
    fused == staged holds by construction). ACT 1: SiLU, 2: GELU-tanh."""
    if ACT == 1:
        act = silu(g)
    else:
        act = gelu_tanh(g)
    return quantize_fp8_e4m3(act * u, inv_scale)


@triton.jit
def _epilogue_operands(sa_ptr, sw_ptr, bias_ptr, so_ptr, o_n, N, EPI: tl.constexpr,
                       GATED: tl.constexpr):
    """What the epilogue reads besides the accumulator: the dequant scale ``s_a * s_w``,
    the bias at columns ``o_n`` (EPI 1-3) and ``fp32(1 / s_out)`` (EPI 3, GATED). The
    kernels read them right after the grid-dependency wait, so their latency hides
    behind the K loop; read after it, they added one memory round trip to every GEMM
    (H200, PI0.5 decoder GELU stack: 212 us -> 202 us, the same bits)."""
    s = tl.load(sa_ptr).to(tl.float32) * tl.load(sw_ptr).to(tl.float32)
    b = s
    if not GATED and EPI != 0:
        b = tl.load(bias_ptr + o_n % N).to(tl.float32)
    inv = s
    if GATED or EPI == 3:
        inv = tl.div_rn(1.0, tl.load(so_ptr).to(tl.float32))
    return s, b, inv


@triton.jit
def _epilogue(acc, acc_u, s, b, inv, o_m, o_n, M, N, ldc, c_ptr, q_ptr,
              EPI: tl.constexpr, GATED: tl.constexpr, ACT: tl.constexpr):
    """Epilogue on the fp32 accumulator(s); ``s, b, inv`` from ``_epilogue_operands``.
    ``o_m`` / ``o_n``: row / column index of each accumulator element, as 2-D tensors
    broadcasting to its shape (the swap kernel's accumulator is transposed)."""
    mask = (o_m < M) & (o_n < N)
    o_row = o_m.to(tl.int64)
    o_c = o_row * ldc + o_n
    o_q = o_row * N + o_n
    if GATED:
        b_g = (acc * s).to(tl.bfloat16)
        b_u = (acc_u * s).to(tl.bfloat16)
        tl.store(c_ptr + o_c, b_g, mask=mask)
        tl.store(c_ptr + o_c + N, b_u, mask=mask)
        q = gated_act_mul_quant(b_g.to(tl.float32), b_u.to(tl.float32), inv, ACT)
        tl.store(q_ptr + o_q, q, mask=mask)
    else:
        y = acc * s
        if EPI == 3:
            h = y.to(tl.bfloat16)
            tl.store(c_ptr + o_c, h, mask=mask)
            tl.store(q_ptr + o_q, quantize_fp8_e4m3(gelu_tanh(h.to(tl.float32) + b), inv),
                     mask=mask)
        else:
            if EPI == 1:
                y = y + b
            if EPI == 2:
                y = y.to(tl.bfloat16).to(tl.float32) + b
            tl.store(c_ptr + o_c, y.to(tl.bfloat16), mask=mask)


@triton.jit
def _prefetch_rows_l2(w_ptr, rows, k0, nbytes, K):
    """Bulk L2 prefetch of bytes [k0, k0 + nbytes) of each weight row in ``rows``
    (16-byte aligned, a multiple of 16 bytes: the host enables it only when K and
    the K split are multiples of 16)."""
    prefetch_l2(w_ptr + rows.to(tl.int64) * K + k0, nbytes)


@triton.jit
def _wait_for_producers(w_ptr, rows, k0, nbytes, K, N, GATED: tl.constexpr,
                        PDL: tl.constexpr, PREFETCH: tl.constexpr, EARLY_RELEASE: tl.constexpr):
    """Programmatic dependent launch, consumer side: this kernel may start while
    the previous one runs. Fetch this program's weight rows into L2 (``rows``,
    and the up rows ``N + rows`` when GATED), then wait until the kernels before
    have completed and their writes are visible. Only a cache hint runs before the
    wait, so the kernel is correct whatever the previous kernel wrote, the weight
    included: every read comes after the wait (from L2 once the prefetch landed).

    Producer side (EARLY_RELEASE): past the wait, the next kernel may launch and
    prefetch while this one streams from L2. Released before the wait instead,
    every kernel would launch the next one at once, a cascade of prefetches for
    kernels far ahead competing with the running one (H200, decoder up GEMM:
    4.31 us against 4.10)."""
    if PDL:
        if PREFETCH:
            _prefetch_rows_l2(w_ptr, rows, k0, nbytes, K)
            if GATED:
                _prefetch_rows_l2(w_ptr, rows + N, k0, nbytes, K)
        gdc_wait()
        if EARLY_RELEASE:
            gdc_launch_dependents()


@triton.jit
def _release_dependents(PDL: tl.constexpr, EARLY_RELEASE: tl.constexpr):
    """Without EARLY_RELEASE (a sweep option): the next kernel may launch once every
    program has streamed its weight, and prefetch while this one reduces and stores
    (H200, GELU decoder stack: 220 us against 218 with the early release)."""
    if PDL and not EARLY_RELEASE:
        gdc_launch_dependents()


@triton.jit(do_not_specialize=["M"])
def _fp8_gemm_kernel(
    a_ptr, w_ptr, sa_ptr, sw_ptr, bias_ptr, so_ptr, c_ptr, q_ptr,
    M, N, K, ldc,
    EPI: tl.constexpr, GATED: tl.constexpr, ACT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, EVEN_K: tl.constexpr, IMPRECISE: tl.constexpr,
    PDL: tl.constexpr, PREFETCH: tl.constexpr, EARLY_RELEASE: tl.constexpr,
):
    """One BLOCK_M x BLOCK_N output tile per program (grouped order for L2 reuse).

    N is the number of output columns computed (H when GATED; the up rows of
    the merged weight start at row N). Loads clamp row indices (``% M``,
    ``% N``) instead of masking them, so only the K tail is ever masked.
    """
    i_m, i_n = grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)

    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_k = tl.arange(0, BLOCK_K)
    r_m = (o_m % M).to(tl.int64)
    r_n = o_n % N
    _wait_for_producers(w_ptr, r_n, 0, K, K, N, GATED, PDL, PREFETCH, EARLY_RELEASE)
    s, b, inv = _epilogue_operands(sa_ptr, sw_ptr, bias_ptr, so_ptr, o_n[None, :], N, EPI,
                                   GATED)
    p_a = a_ptr + r_m[:, None] * K + o_k[None, :]
    p_w = w_ptr + r_n.to(tl.int64)[None, :] * K + o_k[:, None]  # W^T tile [BLOCK_K, BLOCK_N]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = acc
    if GATED:
        p_u = w_ptr + (r_n + N).to(tl.int64)[None, :] * K + o_k[:, None]
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
    _release_dependents(PDL, EARLY_RELEASE)

    _epilogue(acc, acc_u, s, b, inv, o_m[:, None], o_n[None, :], M, N, ldc, c_ptr, q_ptr, EPI,
              GATED, ACT)


@triton.jit(do_not_specialize=["M", "programs"])
def _fp8_gemm_tma_kernel(
    a_desc, w_desc, sa_ptr, sw_ptr, bias_ptr, so_ptr, c_ptr, q_ptr,
    M, N, K, ldc, programs,
    EPI: tl.constexpr, GATED: tl.constexpr, ACT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, IMPRECISE: tl.constexpr, PAIRED: tl.constexpr,
):
    """Persistent form of ``_fp8_gemm_kernel`` for large M: ``programs`` programs (one per
    SM, fewer for fewer tiles; a runtime value, so the tile count never triggers a new
    compile) walk the output tiles in grouped order; A and W tiles arrive by TMA (tensor
    descriptors; rows past M / N and the K tail read as zero), so the loop carries no
    address arithmetic or masks. The epilogue is the tile kernel's, per tile."""
    n_tiles = tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N)
    for t in tl.range(tl.program_id(0), n_tiles, programs, flatten=True):
        i_m, i_n = grouped_tile(t, M, N, BLOCK_M, BLOCK_N, GROUP_M)
        m0 = i_m * BLOCK_M
        n0 = i_n * BLOCK_N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc_u = acc
        if PAIRED:
            # two K blocks per step, each summed in the tensor core from zero and then
            # added: the numerics of IMPRECISE = BLOCK_K (the same bits, measured), but
            # the first block's additions issue while the second block's wgmma runs
            # (the promoted loop waits for every block before adding it)
            for k in range(0, K, 2 * BLOCK_K):
                t0 = tl.dot(a_desc.load([m0, k]), w_desc.load([n0, k]).T)
                t1 = tl.dot(a_desc.load([m0, k + BLOCK_K]), w_desc.load([n0, k + BLOCK_K]).T)
                acc += t0
                acc += t1
        else:
            for k in range(0, K, BLOCK_K):
                b_a = a_desc.load([m0, k])
                acc = tl.dot(b_a, w_desc.load([n0, k]).T, acc, max_num_imprecise_acc=IMPRECISE)
                if GATED:  # up rows start at row N of the merged weight
                    acc_u = tl.dot(b_a, w_desc.load([N + n0, k]).T, acc_u,
                                   max_num_imprecise_acc=IMPRECISE)
        o_m = m0 + tl.arange(0, BLOCK_M)
        o_n = n0 + tl.arange(0, BLOCK_N)
        s, b, inv = _epilogue_operands(sa_ptr, sw_ptr, bias_ptr, so_ptr, o_n[None, :], N, EPI,
                                       GATED)
        _epilogue(acc, acc_u, s, b, inv, o_m[:, None], o_n[None, :], M, N, ldc, c_ptr, q_ptr,
                  EPI, GATED, ACT)


@triton.jit
def _swap_partial(a_ptr, x_ptr, w_ptr, row0, o_m, o_n, o_k, M, M_IN, N, K, k0, k_end, inv_sx,
                  store_a, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_K: tl.constexpr, EVEN_K: tl.constexpr, IMPRECISE: tl.constexpr,
                  QUANT_A: tl.constexpr):
    """sum over k in [k0, k_end) of W[row0 + o_n, k] * A[o_m, k]: a [BLOCK_N, BLOCK_M] tile.

    QUANT_A (BF16 entry): A = Q8(x, s_x) is formed in the load, rows M_IN <= m < M
    FP8 zero, exactly the values the quantize kernel writes; ``store_a`` programs
    also write those codes to ``a_ptr`` (the input_fp8 output)."""
    p_w = w_ptr + (row0 + o_n % N).to(tl.int64)[:, None] * K + (k0 + o_k)[None, :]
    o_a = o_m.to(tl.int64)[None, :] * K + (k0 + o_k)[:, None]  # A^T tile [BLOCK_K, BLOCK_M]
    p_a = a_ptr + (o_m % M).to(tl.int64)[None, :] * K + (k0 + o_k)[:, None]
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for k in range(k0, k_end, BLOCK_K):
        m_k = o_k < K - k
        if EVEN_K:
            b_w = tl.load(p_w)
        else:
            b_w = tl.load(p_w, mask=m_k[None, :], other=0.0)
        if QUANT_A:
            m_a = (o_m < M_IN)[None, :] & m_k[:, None]
            b_x = tl.load(x_ptr + o_a, mask=m_a, other=0.0).to(tl.float32)
            b_a = quantize_fp8_e4m3(b_x, inv_sx)  # masked (pad) rows load 0 -> code 0x00
            tl.store(a_ptr + o_a, b_a, mask=store_a & (o_m < M)[None, :] & m_k[:, None])
            o_a += BLOCK_K
        elif EVEN_K:
            b_a = tl.load(p_a)
        else:
            b_a = tl.load(p_a, mask=m_k[:, None], other=0.0)
        acc = tl.dot(b_w, b_a, acc, max_num_imprecise_acc=IMPRECISE)
        p_w += BLOCK_K
        p_a += BLOCK_K
    return acc


@triton.jit(do_not_specialize=["M", "M_IN"])
def _fp8_gemm_swap_kernel(
    a_ptr, x_ptr, w_ptr, sa_ptr, sw_ptr, bias_ptr, so_ptr, c_ptr, q_ptr, ws_ptr, lock_ptr,
    M, M_IN, N, K, ldc, k_per_split,
    EPI: tl.constexpr, GATED: tl.constexpr, ACT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SPLIT: tl.constexpr, EVEN_K: tl.constexpr, IMPRECISE: tl.constexpr,
    QUANT_A: tl.constexpr, PDL: tl.constexpr, PREFETCH: tl.constexpr,
    EARLY_RELEASE: tl.constexpr,
):
    """Decode rows (M <= BLOCK_M): program (tile, split) owns weight rows
    [tile*BLOCK_N, +BLOCK_N) and K range [split*k_per_split, +k_per_split)."""
    i_p = tl.program_id(0)
    i_n = i_p // SPLIT
    i_s = i_p % SPLIT
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_m = tl.arange(0, BLOCK_M)
    o_k = tl.arange(0, BLOCK_K)
    k0 = i_s * k_per_split
    k_end = tl.minimum(k0 + k_per_split, K)
    _wait_for_producers(w_ptr, o_n % N, k0, k_end - k0, K, N, GATED, PDL, PREFETCH,
                        EARLY_RELEASE)
    s, b, inv = _epilogue_operands(sa_ptr, sw_ptr, bias_ptr, so_ptr, o_n[:, None], N, EPI, GATED)
    inv_sx = 1.0
    if QUANT_A:
        inv_sx = tl.div_rn(1.0, tl.load(sa_ptr).to(tl.float32))
    acc = _swap_partial(a_ptr, x_ptr, w_ptr, 0, o_m, o_n, o_k, M, M_IN, N, K, k0, k_end, inv_sx,
                        i_n == 0, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, IMPRECISE, QUANT_A)
    acc_u = acc
    if GATED:
        acc_u = _swap_partial(a_ptr, x_ptr, w_ptr, N, o_m, o_n, o_k, M, M_IN, N, K, k0, k_end,
                              inv_sx, False, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, IMPRECISE,
                              QUANT_A)
    _release_dependents(PDL, EARLY_RELEASE)
    if SPLIT == 1:
        _epilogue(acc, acc_u, s, b, inv, o_m[None, :], o_n[:, None], M, N, ldc, c_ptr, q_ptr,
                  EPI, GATED, ACT)
    else:
        TILE: tl.constexpr = BLOCK_N * BLOCK_M
        N_ACC: tl.constexpr = 2 if GATED else 1
        o_t = tl.arange(0, BLOCK_N)[:, None] * BLOCK_M + tl.arange(0, BLOCK_M)[None, :]
        p_ws = ws_ptr + i_n.to(tl.int64) * (SPLIT * N_ACC * TILE) + o_t
        if GATED:  # the up partial beside the gate one, stored before the arrival
            tl.store(p_ws + i_s * (N_ACC * TILE) + TILE, acc_u)
        if split_k_arrive(p_ws, acc, i_s, lock_ptr + i_n, SPLIT, N_ACC * TILE):
            acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
            acc_u = acc
            # fixed order: the result is deterministic; unrolled, the loads are in flight together
            for j in tl.static_range(SPLIT):
                acc += tl.load(p_ws + j * (N_ACC * TILE), cache_modifier=".cg")
                if GATED:
                    acc_u += tl.load(p_ws + j * (N_ACC * TILE) + TILE, cache_modifier=".cg")
            _epilogue(acc, acc_u, s, b, inv, o_m[None, :], o_n[:, None], M, N, ldc, c_ptr,
                      q_ptr, EPI, GATED, ACT)
            split_k_release(lock_ptr + i_n)


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




_sm_count = sm_count  # module-level name: tests pin it to an H100's 132 SMs

SWAP_BLOCK_N = 64  # weight rows per swap-kernel program
# K-split bound of a few-tile decode GEMM: tiles x SPLIT <= this many programs per 100 SMs
SPLIT_PROGRAMS_PCT = 120


def _few_tiles(N, sms):
    """Fewer than ~0.36 column tiles of 64 weight rows per SM (H100: 48)."""
    return cdiv(N, 64) * 132 < 48 * sms


def decode_config(M, N, K, sms, programs_pct=SPLIT_PROGRAMS_PCT, block_n=None):
    """The swap-kernel configuration of ``gemm_config`` for M <= 64 rows; the tuning sweep
    calls it with other bounds and tile heights. 64-row tiles run on wgmma (the promoted
    FP8 dot: one tensor-core step at a time), 32-row tiles on mma.sync (FP8 widened to
    FP16, exact, fp32 accumulation). Tile height by default: 32 rows where the weight
    has enough 64-row tiles to go unsplit yet 32-row tiles still fit one wave (N ~
    3072-4224 on 132 SMs: twice the programs, the SMs the 64-row grid leaves idle);
    else 64 (``SWAP_BLOCK_N``)."""
    few_tiles = _few_tiles(N, sms)
    if block_n is None:
        block_n = 32 if not few_tiles and cdiv(N, 32) <= sms else SWAP_BLOCK_N
    tiles = cdiv(N, block_n)
    bm = 16 if M <= 16 else (32 if M <= 32 else 64)
    bk = 256 if K >= 8192 or not few_tiles else 128
    steps = cdiv(K, bk)
    split = 1
    if few_tiles:
        while split * 2 * tiles * 100 <= programs_pct * sms and split * 4 <= steps:
            split *= 2
    k_per_split = cdiv(steps, split) * bk
    split = cdiv(K, k_per_split)  # no empty split
    return ("swap", bm, block_n, bk, split, k_per_split, 4, 4)


@functools.lru_cache(maxsize=4096)
def gemm_config(M, N, K, device):
    """Launch configuration, a pure function of (M, N, K, device).

    N is the *total* weight rows (2H for a merged gate/up weight), so the gated
    kernel and the staged GEMM of the same weight use the same configuration.
    Returns a tuple whose first item names the kernel:

    * ``("swap", BLOCK_M, BLOCK_N, BLOCK_K, SPLIT, k_per_split, warps, stages)``
      for decode rows. SPLIT is 1 when the weight has at least ~0.36 column
      tiles per SM (H100: 48 tiles of 64 rows), with 256-wide K steps (twice the
      bytes in flight per program: one program per column tile streams the whole
      weight); else the largest power of two keeping tiles x SPLIT <= 1.2 programs
      per SM (``SPLIT_PROGRAMS_PCT``), with >= 2 K steps per split. Measured (H100,
      then H200 with PDL): 4096 -> 1024 best at 16 x 8, 16384 -> 2048 at 32 x 4
      (``decode_config``: the sweep's other bounds); 1024 -> 4096 at 64 x 1 programs of
      64 rows until 2026-12-02, then 128 of 32 rows (``decode_config``'s tile height:
      H200, 18-layer chains of the up GEMM 83.9 against 91.9 us, the GELU decoder stack
      165.5 against 171.1 us).
    * ``("tma", BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, warps, stages, paired_stages)``
      for M >= TMA_MIN_M with K % 16 == 0: the tile of ``tma_tile``.
    * ``("tile", BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, warps, stages)`` otherwise:
      128 x 128 x 128 tiles (8 warps) for M > 256 (K % 16 != 0), else the N split
      is halved (down to 16 columns) until the grid covers every SM.
    """
    sms = _sm_count(device)
    if M <= 16 or (M <= 64 and _few_tiles(N, sms)):
        return decode_config(M, N, K, sms)
    if M >= TMA_MIN_M and K % 16 == 0:
        ws = _ws_kernel()
        return ("tma",) + tma_tile(M, N, sms, ws.IN_RULE and ws.available(torch.device(device)))
    return tile_config(M, N, sms)


def tile_config(M, N, sms):
    """The pointer tile kernel's configuration of ``gemm_config`` (M > 16); for M >= 256
    also the rule before the TMA kernel, which the large-M sweep times against it."""
    if M <= 64:
        bm, warps, stages = (32 if M <= 32 else 64), 4, 4
    elif M <= 256:
        bm, warps, stages = 64, 4, 4
    else:
        bm, warps, stages = 128, 8, 3
    bn, bk = 128, 128
    if M <= 256:
        while bn > 16 and cdiv(M, bm) * cdiv(N, bn) < sms:
            bn //= 2
    return ("tile", bm, bn, bk, 8, warps, stages)


# Rows from which the persistent TMA kernel runs (a tensor descriptor needs K % 16 == 0).
TMA_MIN_M = 256
# TMA kernel tiles (BLOCK_K 128): (BLOCK_M, BLOCK_N, warps, stages, stages of the paired
# K loop, throughput relative to the first), measured on H200 at 8192^3
# (benchmarks/tune_fp8_large.py).
TMA_TILES = ((128, 128, 8, 4, 3, 1.0), (64, 128, 4, 4, 3, 0.81), (64, 64, 4, 5, 3, 0.61))
# Throughput of fp8_wgmma's Gluon kernel on the 128 x 128 tile relative to the Triton
# kernel's (H200, benchmarks/tune_fp8_gluon.py: 1.06-1.24x on the 128 x 128 rows).
WS_TILE_GAIN = 1.12


def tma_tile(M, N, sms, ws=False):
    """The TMA tile with the least (waves of tiles over the SMs) x (tile time): the
    largest tile unless a smaller one fills more SMs in as many waves (a down projection,
    N ~ 1024, at M = 256-1024). ``ws``: the 128 x 128 tile runs the faster Gluon kernel
    (WS_TILE_GAIN; SigLIP up at M = 512 then takes 128 x 128 tiles). Returns the config
    tail (BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, warps, stages, paired-loop stages)."""
    def cost(tile):
        bm, bn, *_, rate = tile
        if ws and (bm, bn) == (128, 128):
            rate *= WS_TILE_GAIN
        return cdiv(cdiv(M, bm) * cdiv(N, bn), sms) * bm * bn / rate
    bm, bn, warps, stages, paired_stages, _ = min(TMA_TILES, key=cost)  # ties: the larger
    return (bm, bn, 128, 8, warps, stages, paired_stages)


_SPLIT_LOCKS = SplitCounters()


def launch_fp8_gemm(a, w, sa, sw, c, *, bias=None, so=None, q=None, epi=EPI_NONE, act=0,
                    x=None):
    """c (and q) <- epilogue(A @ W^T). ``act`` != 0 selects the gated epilogue.

    BF16 entry: with ``x`` (BF16 [M_in, K], M_in <= P) given, ``a`` is the
    input_fp8 buffer [P, K] and the GEMM runs over its P rows, A = Q8(x, sa)
    with FP8 zero pad rows: the decode kernel forms A in its load and writes
    ``a`` as it goes (one launch); the tile kernel runs after the quantize
    kernel. Both produce the codes of ``launch_quantize_input``, so the BF16
    entry equals the FP8 entry on its input_fp8 bit for bit."""
    cfg = gemm_config(a.shape[0], w.shape[0], a.shape[1], a.device)
    if x is not None and cfg[0] != "swap":
        launch_quantize_input(x, sa, a)
        x = None
    # PDL for the decode kernel only: the tile kernel was not measured faster with it
    pdl = cfg[0] == "swap" and uses_pdl(a.device)
    launch_with_config(cfg, pdl, a, w, sa, sw, c, bias=bias, so=so, q=q, epi=epi, act=act, x=x)


def prefetches(w):
    """Whether a PDL launch prefetches weight ``w`` into L2 (``PREFETCH_MAX_BYTES``)."""
    return w.numel() * w.element_size() <= PREFETCH_MAX_BYTES


def tma_ready(a, w):
    """Both GEMM operands can be read through tensor descriptors (16-byte aligned)."""
    return a.data_ptr() % 16 == 0 and w.data_ptr() % 16 == 0


def launch_with_config(cfg, pdl, a, w, sa, sw, c, *, bias=None, so=None, q=None, epi=EPI_NONE,
                       act=0, x=None, prefetch=None, early_release=True, imprecise=None,
                       force_triton=False):
    """One launch of ``cfg`` (a ``gemm_config`` tuple); the tuning sweep calls it directly
    (``prefetch``, ``early_release``, ``imprecise``, ``force_triton``: its options; the
    defaults are the package's). With ``fp8_wgmma.IN_RULE``, a 128 x 128 TMA tile without
    a gated epilogue runs the warp-specialized Gluon kernel of fp8_wgmma.py on sm_90 (same
    bits as the Triton TMA kernel, which ``force_triton`` selects)."""
    prefetch = (pdl and prefetches(w)) if prefetch is None else prefetch
    if imprecise is None:
        imprecise = TMA_IMPRECISE_ACC if cfg[0] == "tma" else IMPRECISE_ACC
    M, K = a.shape
    n_total = w.shape[0]
    gated = act != 0
    N = n_total // 2 if gated else n_total
    bias_arg = sa if bias is None else bias
    so_arg = sa if so is None else so
    q_arg = c if q is None else q
    launch = {"launch_pdl": True} if pdl else {}
    with device_guard(a):
        if cfg[0] == "swap":
            _, bm, bn, bk, split, k_per_split, warps, stages = cfg
            tiles = cdiv(N, bn)
            if split > 1:
                ws = torch.empty(tiles * split * (2 if gated else 1) * bn * bm,
                                 dtype=FP32, device=a.device)
                locks = _SPLIT_LOCKS.get(a.device, tiles)
            else:
                ws = locks = sa  # unused
            _fp8_gemm_swap_kernel[(tiles * split,)](
                a, a if x is None else x, w, sa, sw, bias_arg, so_arg, c, q_arg, ws, locks, M,
                M if x is None else x.shape[0], N, K, c.shape[1], k_per_split, EPI=epi,
                GATED=gated, ACT=act, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, SPLIT=split,
                EVEN_K=K % bk == 0, IMPRECISE=imprecise, QUANT_A=x is not None, PDL=pdl,
                PREFETCH=prefetch and K % 16 == 0 and k_per_split % 16 == 0,
                EARLY_RELEASE=early_release,
                num_warps=warps, num_stages=stages, **launch,
            )
        elif cfg[0] == "tma" and not tma_ready(a, w):
            # a tensor descriptor needs 16-byte aligned bases: the pointer kernel on the
            # same tile runs the same instructions per output element
            launch_with_config(("tile",) + cfg[1:7], pdl, a, w, sa, sw, c, bias=bias, so=so,
                               q=q, epi=epi, act=act, x=x, prefetch=prefetch,
                               early_release=early_release, imprecise=imprecise,
                               force_triton=force_triton)
        elif (cfg[0] == "tma" and imprecise == cfg[3] and not force_triton
              and _ws_kernel().IN_RULE and _ws_kernel().usable(a, cfg, gated)):
            _ws_kernel().launch(a, w, sa, sw, c, bias_arg, so_arg, q_arg, epi, _sm_count(a.device))
        elif cfg[0] == "tma":
            _, bm, bn, bk, group, warps, stages, paired_stages = cfg
            # the paired K loop (no gated form) where its accumulation is the promoted one
            paired = not gated and paired_stages > 0 and imprecise == bk
            programs = min(cdiv(M, bm) * cdiv(N, bn), _sm_count(a.device))
            _fp8_gemm_tma_kernel[(programs,)](
                TensorDescriptor.from_tensor(a, [bm, bk]),
                TensorDescriptor.from_tensor(w, [bn, bk]), sa, sw, bias_arg, so_arg, c, q_arg,
                M, N, K, c.shape[1], programs, EPI=epi, GATED=gated, ACT=act, BLOCK_M=bm,
                BLOCK_N=bn, BLOCK_K=bk, GROUP_M=group, IMPRECISE=imprecise, PAIRED=paired,
                num_warps=warps,
                num_stages=paired_stages if paired else stages,
            )
        else:
            _, bm, bn, bk, group, warps, stages = cfg
            grid = (cdiv(M, bm) * cdiv(N, bn),)
            _fp8_gemm_kernel[grid](
                a, w, sa, sw, bias_arg, so_arg, c, q_arg, M, N, K, c.shape[1],
                EPI=epi, GATED=gated, ACT=act, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
                GROUP_M=group, EVEN_K=K % bk == 0, IMPRECISE=imprecise, PDL=pdl,
                # one row tile: each weight row is fetched by one program only
                PREFETCH=prefetch and K % 16 == 0 and M <= bm, EARLY_RELEASE=early_release,
                num_warps=warps, num_stages=stages, **launch,
            )


def _ws_kernel():
    """The fp8_wgmma module, imported on first use: it imports this module's epilogue."""
    from . import fp8_wgmma
    return fp8_wgmma


def launch_quantize_input(x, sx, input_fp8):
    M, K = x.shape
    P = input_fp8.shape[0]
    block_k = min(1024, next_power_of_2(K))
    block_r = max(1, 2048 // block_k)
    grid = (cdiv(P, block_r), cdiv(K, block_k))
    with device_guard(x):
        _quantize_input_kernel[grid](x, sx, input_fp8, M, P, K, BLOCK_R=block_r,
                                     BLOCK_K=block_k, num_warps=4)


# ----------------------------------------------------------------------------
# Validation helpers (spec phrases; RuntimeError unless the spec says ValueError)
# ----------------------------------------------------------------------------


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
    # device first: under torch.compile, comparing the symbolic M would guard on it
    if _pads_mid_rows(x.device) and 9 <= M <= 128:
        return (M + 63) // 64 * 64
    return M


@functools.lru_cache(maxsize=None)
def _pads_mid_rows(device):
    """NVIDIA Thor (sm_110) pads 9..128 rows to a multiple of 64 (spec §1.3)."""
    return (device.type == "cuda" and getattr(torch.version, "hip", None) is None
            and torch.cuda.get_device_capability(device) == (11, 0))


def check_padded(P, named):
    """Every passed scratch buffer of a BF16-entry call must have P rows."""
    for name, t in named:
        if t is not None and (t.dim() != 2 or t.shape[0] != P):
            raise ValueError(f"all scratch outputs must use input_fp8.shape[0] padded rows: "
                             f"{name} has shape {tuple(t.shape)}, expected {P} rows")


def check_linear(input, input_dtype, weight, bias, input_scale, weight_scale):
    """Inputs of an FP8 linear: input [M, K] (FP8, or BF16 for the BF16 entries), weight
    FP8 [N, K], optional bias [N], scalar fp32 scales."""
    check_matrix(input, "input", input_dtype)
    check_matrix(weight, "weight", FP8)
    if bias is not None:
        check_bias(bias, "bias", weight.shape[0], "weight.shape[0]")
    check_scale(input_scale, "input_scale")
    check_scale(weight_scale, "weight_scale")
    if input.shape[1] != weight.shape[1]:
        raise RuntimeError(f"input.shape[1] must match weight.shape[1], got {input.shape[1]} "
                           f"and {weight.shape[1]}")


def check_linear_out(out, rows, weight):
    check_out(out, "out", BF16, (rows, weight.shape[0]),
              "out must have shape (input.shape[0], weight.shape[0])")


def check_input_fp8(input_fp8, P, K):
    check_out(input_fp8, "input_fp8", FP8, (P, K),
              "input_fp8 must have shape (padded rows, input.shape[1])")


def empty(like, rows, cols, dtype):
    return torch.empty((rows, cols), dtype=dtype, device=like.device)


# ----------------------------------------------------------------------------
# fp8_gemm_bf16: the public GEMM that both FP8 packages export
# ----------------------------------------------------------------------------


def _run_gemm(input, weight, input_scale, weight_scale, out):
    launch_fp8_gemm(input, weight, input_scale, weight_scale, out, epi=EPI_NONE)


@torch.library.custom_op(add_op_namespace_prefix("fp8_gemm_bf16"), mutates_args=("out",))
def _fp8_gemm_bf16_op(input: Tensor, weight: Tensor, input_scale: Tensor, weight_scale: Tensor,
                      out: Tensor) -> None:
    _run_gemm(input, weight, input_scale, weight_scale, out)


@torch.library.register_fake(add_op_namespace_prefix("fp8_gemm_bf16"))
def _fp8_gemm_bf16_fake(input, weight, input_scale, weight_scale, out):
    check_linear(input, FP8, weight, None, input_scale, weight_scale)
    check_linear_out(out, input.shape[0], weight)


def fp8_gemm_bf16(input: Tensor, weight: Tensor, input_scale: Tensor, weight_scale: Tensor,
                  out: Optional[Tensor] = None) -> Tensor:
    """``out = bf16(input_scale * weight_scale * (input @ weight^T))``, fp32 accumulation.

    input fp8 [M, K]; weight fp8 [N, K]; scales fp32 (1,); out bf16 [M, N].
    """
    check_linear(input, FP8, weight, None, input_scale, weight_scale)
    out = empty(input, input.shape[0], weight.shape[0], BF16) if out is None else out
    check_linear_out(out, input.shape[0], weight)
    same_device(("input", input), ("weight", weight), ("input_scale", input_scale),
                ("weight_scale", weight_scale), ("out", out))
    run = _run_gemm if launch_directly(input) else _fp8_gemm_bf16_op
    run(input, weight, input_scale, weight_scale, out)
    return out
