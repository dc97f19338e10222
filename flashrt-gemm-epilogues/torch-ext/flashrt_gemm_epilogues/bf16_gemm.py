"""BF16 GEMM core of the package: ``c = epilogue(a @ b)`` with ``b`` **[K, N]** row-major.

fp32 accumulation; the epilogue runs on the fp32 accumulator and rounds once to BF16:

* ``EPI_NONE``      ``bf16(acc)``
* ``EPI_BIAS``      ``bf16(acc + f32(bias))``
* ``EPI_BIAS_GELU`` ``bf16(G(acc + f32(bias)))`` (G: GELU, tanh form)

Two kernels share that epilogue:

* ``_bf16_gemm_kernel``: one BLOCK_M x BLOCK_N output tile per program, K looped
  inside (grouped tile order). The path for the other shapes.
* ``_bf16_gemm_swap_kernel`` (decode rows, M <= 16, and up to 64 rows when the weight's
  64-column tiles fit one wave): the weight tile is the dot's
  left operand (``acc^T = b^T a^T``), so 16 / 32 / 64 weight columns fill the tensor
  core's M side and the few activation rows sit on its narrow N side. For down
  projections K is split over SPLIT programs per 64-column tile, putting more SMs on
  streaming the weight: each stores its fp32 partial in a workspace and the last to
  arrive (an atomic counter per tile, reset by that program) sums the partials in
  split order and runs the epilogue. One launch, and the sum order is fixed, so the
  result does not depend on which program finishes last.

Determinism: the configuration is a pure function of (M, N, K, device), no autotuning;
``benchmarks/tune_epilogues.py`` is the sweep that chose it.
"""

import functools

import torch
import triton
import triton.language as tl

from ._helpers import gelu_tanh, grouped_tile, split_k_arrive, split_k_release
from ._host import SplitCounters, cdiv, device_guard, sm_count

FP32 = torch.float32

EPI_NONE, EPI_BIAS, EPI_BIAS_GELU = 0, 1, 2

SWAP_MAX_M = 16  # decode rows: the swap kernel's 16-wide N side
WIDE_SWAP_MAX_M = 64  # up to this many rows the swap kernel also runs (32 / 64 wide)
SWAP_BLOCK_N = 64  # widest swap tile (one wgmma M); split-K and multi-wave shapes use it


# ----------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------


@triton.jit
def _load_bias(bias_ptr, o_n, N, EPI: tl.constexpr):
    """f32(bias[o_n]) for the bias epilogues, loaded before the K loop so that its
    latency hides behind the weight stream (zeros without a bias)."""
    bias = tl.zeros(o_n.shape, dtype=tl.float32)
    if EPI != 0:
        bias = tl.load(bias_ptr + o_n % N).to(tl.float32)
    return bias


@triton.jit
def _epilogue_store(acc, bias, o_m, o_n, M, N, c_ptr, EPI: tl.constexpr):
    """c[o_m, o_n] = bf16(epilogue(acc)). ``o_m`` / ``o_n``: row / column index of each
    accumulator element as 2-D tensors broadcasting to its shape (the swap kernel's
    accumulator is transposed); ``bias`` from ``_load_bias(o_n)``."""
    if EPI != 0:
        acc = acc + bias
    if EPI == 2:
        acc = gelu_tanh(acc)
    mask = (o_m < M) & (o_n < N)
    tl.store(c_ptr + o_m.to(tl.int64) * N + o_n, acc.to(tl.bfloat16), mask=mask)


@triton.jit(do_not_specialize=["M"])
def _bf16_gemm_kernel(a_ptr, b_ptr, bias_ptr, c_ptr, M, N, K,
                      EPI: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, EVEN_K: tl.constexpr):
    """c[M, N] = epilogue(a[M, K] @ b[K, N]); grouped tile order, clamped row loads."""
    i_m, i_n = grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)

    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_k = tl.arange(0, BLOCK_K)
    p_a = a_ptr + (o_m % M).to(tl.int64)[:, None] * K + o_k[None, :]
    p_b = b_ptr + o_k.to(tl.int64)[:, None] * N + (o_n % N)[None, :]
    bias = _load_bias(bias_ptr, o_n[None, :], N, EPI)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        if EVEN_K:
            b_a = tl.load(p_a)
            b_b = tl.load(p_b)
        else:
            m_k = o_k < K - k
            b_a = tl.load(p_a, mask=m_k[None, :], other=0.0)
            b_b = tl.load(p_b, mask=m_k[:, None], other=0.0)
        acc = tl.dot(b_a, b_b, acc)
        p_a += BLOCK_K
        p_b += BLOCK_K * N
    _epilogue_store(acc, bias, o_m[:, None], o_n[None, :], M, N, c_ptr, EPI)


@triton.jit
def _swap_partial(a_ptr, b_ptr, o_m, o_n, o_k, M, N, K, k0, k_end,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  EVEN_K: tl.constexpr):
    """sum over k in [k0, k_end) of b[k, o_n] * a[o_m, k]: a [BLOCK_N, BLOCK_M] tile.

    Rows >= M of the a^T tile are masked, not clamped: clamped rows repeat the last
    row's addresses, and with M = 1 every program of the wave would request the same
    cache lines BLOCK_M times (clamped, M = 1 measured up to 40% slower than M = 16)."""
    p_b = b_ptr + (k0 + o_k).to(tl.int64)[None, :] * N + (o_n % N)[:, None]  # b^T tile
    p_a = a_ptr + o_m.to(tl.int64)[None, :] * K + (k0 + o_k)[:, None]  # a^T tile
    m_m = (o_m < M)[None, :]
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for k in range(k0, k_end, BLOCK_K):
        if EVEN_K:
            b_b = tl.load(p_b)
            b_a = tl.load(p_a, mask=m_m, other=0.0)
        else:
            m_k = o_k < K - k
            b_b = tl.load(p_b, mask=m_k[None, :], other=0.0)
            b_a = tl.load(p_a, mask=m_k[:, None] & m_m, other=0.0)
        acc = tl.dot(b_b, b_a, acc)
        p_b += BLOCK_K * N
        p_a += BLOCK_K
    return acc


@triton.jit(do_not_specialize=["M"])
def _bf16_gemm_swap_kernel(a_ptr, b_ptr, bias_ptr, c_ptr, ws_ptr, count_ptr,
                           M, N, K, k_per_split, SPLIT,
                           EPI: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr, EVEN_K: tl.constexpr):
    """Decode rows (M <= BLOCK_M): program (tile, split) owns columns
    [tile*BLOCK_N, +BLOCK_N) and K range [split*k_per_split, +k_per_split).
    SPLIT_K (constexpr) is SPLIT > 1."""
    i_p = tl.program_id(0)
    i_n = i_p // SPLIT
    i_s = i_p % SPLIT
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_m = tl.arange(0, BLOCK_M)
    o_k = tl.arange(0, BLOCK_K)
    k0 = i_s * k_per_split
    k_end = tl.minimum(k0 + k_per_split, K)
    bias = _load_bias(bias_ptr, o_n[:, None], N, EPI)
    acc = _swap_partial(a_ptr, b_ptr, o_m, o_n, o_k, M, N, K, k0, k_end,
                        BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K)
    if not SPLIT_K:
        _epilogue_store(acc, bias, o_m[None, :], o_n[:, None], M, N, c_ptr, EPI)
    else:
        TILE: tl.constexpr = BLOCK_N * BLOCK_M
        o_t = tl.arange(0, BLOCK_N)[:, None] * BLOCK_M + tl.arange(0, BLOCK_M)[None, :]
        p_ws = ws_ptr + i_n.to(tl.int64) * SPLIT * TILE + o_t
        if split_k_arrive(p_ws, acc, i_s, count_ptr + i_n, SPLIT, TILE):
            acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
            for j in range(SPLIT):  # fixed order: the result is deterministic
                acc += tl.load(p_ws + j * TILE, cache_modifier=".cg")
            _epilogue_store(acc, bias, o_m[None, :], o_n[:, None], M, N, c_ptr, EPI)
            split_k_release(count_ptr + i_n)


# ----------------------------------------------------------------------------
# Launch configuration: one analytic config per (M, N, K, device), no autotune
# ----------------------------------------------------------------------------

_sm_count = sm_count  # module-level name: tests pin it to an H100 / H200's 132 SMs


def _swap(bm, bn, bk, split, K):
    """The swap-kernel tuple: each of ``split`` programs per column tile takes an equal
    whole number of ``bk`` steps of K."""
    return ("swap", bm, bn, bk, split, cdiv(cdiv(K, bk), split) * bk, 4, 4)


def _swap_config(N, K, sms):
    """Decode rows (measured on H200, graph replay, distinct weights; tune_epilogues.py):

    * few 64-column tiles (< 0.36 per SM) and K >= 2048 (down projections): K split in
      SPLIT <= 4 parts of >= 512 with tiles x SPLIT <= SMs (4096 -> 1024 at 16 tiles x 4:
      6.3 us, 8.6 unsplit); more splits lose to the last program's serial reduction;
    * otherwise no split, and the narrowest tile of 16 / 32 / 64 columns that still fits
      the columns in one wave (more SMs streaming: 1024 -> 2560 at 80 tiles of 32: 4.4 us,
      4.7 with 64), 64 when none does;
    * 256-wide K steps when every program runs in the first wave and streams >= 1024 of K
      (more bytes in flight per SM), else 128.
    """
    split, bn = 1, SWAP_BLOCK_N
    tiles = cdiv(N, bn)
    if K >= 2048 and tiles * 25 < 9 * sms:
        while split < 4 and tiles * split * 2 <= sms and K // (split * 2) >= 512:
            split *= 2
    else:
        bn = next((b for b in (16, 32) if cdiv(N, b) <= sms), SWAP_BLOCK_N)
        tiles = cdiv(N, bn)
    bk = 256 if tiles * split <= sms and K // split >= 1024 else 128
    return _swap(16, bn, bk, split, K)


def _wide_swap_config(M, N, K, sms):
    """17-64 rows whose 64-column weight tiles fit one wave: the swap kernel with the
    rows on the dot's N side (32 or 64 wide) and 64-column tiles (wgmma); K split in
    powers of two while the programs still fit one wave and each split keeps >= 1024 of
    K. Measured on H200 (graph replay, distinct weights; us, against the tile rule and
    cuBLAS ``torch.mm``): M = 64 4096x4096 12.8 / 21.5 / 11.5, 4096 -> 1024 8.1 / 18.7 /
    7.3, 16384 -> 2048 21.8 / 72.8 / 22.6, 1024 -> 4096 5.1 / 7.0 / 5.1, 1152 -> 4304
    5.9 / 10.2 / 5.9; M = 41 1536 -> 6144 7.6 / 11.8 / 8.2; M = 32 4096x4096 11.9 /
    21.1 / 13.9. With more tiles than SMs (2048 -> 16384) the tile rule stays (20.9
    against 21.3). 256-wide K steps for 32 rows without a split; 64 rows x 256 do not
    fit shared memory."""
    bm = 32 if M <= 32 else 64
    tiles = cdiv(N, SWAP_BLOCK_N)
    split = 1
    while tiles * split * 2 <= sms and K // (split * 2) >= 1024:
        split *= 2
    bk = 256 if bm == 32 and split == 1 and K >= 1024 else 128
    return _swap(bm, SWAP_BLOCK_N, bk, split, K)


@functools.lru_cache(maxsize=4096)
def gemm_config(M, N, K, device):
    """Launch configuration, a pure function of (M, N, K, device). The first item
    names the kernel:

    * ``("swap", BLOCK_M, BLOCK_N, BLOCK_K, SPLIT, k_per_split, warps, stages)`` for
      M <= 16 (``_swap_config``), and for M <= 64 when the 64-column weight tiles fit
      one wave (``_wide_swap_config``).
    * ``("tile", BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, warps, stages)`` otherwise: by M
      bucket; up to M = 256 the column tile is halved (down to 16) until the grid
      covers every SM.
    """
    sms = _sm_count(device)
    if M <= SWAP_MAX_M:
        return _swap_config(N, K, sms)
    if M <= WIDE_SWAP_MAX_M and cdiv(N, SWAP_BLOCK_N) <= sms:
        return _wide_swap_config(M, N, K, sms)
    if M <= 64:
        bm, warps, stages = 32, 4, 4
    elif M <= 256:
        bm, warps, stages = 64, 4, 4
    else:
        bm, warps, stages = 128, 8, 3
    bn, bk = 128, 64
    if M <= 256:
        while bn > 16 and cdiv(M, bm) * cdiv(N, bn) < sms:
            bn //= 2
    return ("tile", bm, bn, bk, 8, warps, stages)


_COUNTERS = SplitCounters()  # split-K arrival counters (graph captures draw from a pool)


def launch_bf16_gemm(a, b, bias, out, epi, cfg=None):
    """out <- epilogue(a @ b); ``cfg`` (a ``gemm_config`` tuple) overrides the launch rule."""
    M, K = a.shape
    N = b.shape[1]
    cfg = cfg or gemm_config(M, N, K, a.device)
    bias_arg = a if bias is None else bias
    with device_guard(a):
        if cfg[0] == "swap":
            _, bm, bn, bk, split, k_per_split, warps, stages = cfg
            tiles = cdiv(N, bn)
            if split > 1:
                ws = torch.empty(tiles * split * bn * bm, dtype=FP32, device=a.device)
                counters = _COUNTERS.get(a.device, tiles)
            else:
                ws = counters = out  # unused
            _bf16_gemm_swap_kernel[(tiles * split,)](
                a, b, bias_arg, out, ws, counters, M, N, K, k_per_split, split, EPI=epi,
                BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, SPLIT_K=split > 1, EVEN_K=K % bk == 0,
                num_warps=warps, num_stages=stages)
        else:
            _, bm, bn, bk, group, warps, stages = cfg
            grid = (cdiv(M, bm) * cdiv(N, bn),)
            _bf16_gemm_kernel[grid](a, b, bias_arg, out, M, N, K, EPI=epi, BLOCK_M=bm,
                                    BLOCK_N=bn, BLOCK_K=bk, GROUP_M=group,
                                    EVEN_K=K % bk == 0, num_warps=warps, num_stages=stages)
