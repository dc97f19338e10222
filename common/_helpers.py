"""Triton device helpers shared by every package (one source of truth).

All math is fp32. Each helper is a ``@triton.jit`` function inlined into the
calling kernel, so using one costs nothing at run time.
"""

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

FP8_E4M3_MAX = tl.constexpr(448.0)


@triton.jit
def enter_dependent_launch(PDL: tl.constexpr):
    """First statement of a kernel launched with ``_host.dependent_launch`` options.
    PDL: the kernel may have started while the previous one still runs, so wait here
    until that kernel has completed and its writes are visible (every load and store
    of the kernel comes after this), then let the next kernel launch: its programs are
    placed while this one runs and wait the same way."""
    if PDL:
        gdc_wait()
        gdc_launch_dependents()


@triton.jit
def rms_inv(sum_sq, n, eps):
    """1 / sqrt(mean(x^2) + eps), correctly rounded (eps inside the root)."""
    return 1.0 / tl.sqrt_rn(sum_sq / n + eps)


@triton.jit
def rope_half(lo, hi, cos, sin):
    """Rotate-half RoPE on the two halves of a head: returns (y_lo, y_hi)."""
    return lo * cos - hi * sin, hi * cos + lo * sin


@triton.jit
def rope_pair(a, b, fr, fi):
    """Interleaved (complex) RoPE of the pair (a, b) by fr + i*fi."""
    return a * fr - b * fi, a * fi + b * fr


@triton.jit
def quantize_fp8_e4m3(v, inv_scale):
    """Static FP8 E4M3: clamp(v * (1/scale), -448, 448) then RNE, saturating.

    ``minimum/maximum`` drop a NaN operand like CUDA fminf/fmaxf, so NaN maps
    to -448 as the spec's kernels do.
    """
    t = v * inv_scale
    t = tl.minimum(tl.maximum(t, -FP8_E4M3_MAX), FP8_E4M3_MAX)
    return t.to(tl.float8e4nv)


@triton.jit
def gelu_tanh(x):
    """GELU with the tanh approximation, fp32."""
    k0: tl.constexpr = 0.7978845608028654  # sqrt(2 / pi)
    k1: tl.constexpr = 0.044715
    inner = k0 * (x + k1 * x * x * x)
    # tanh(u) = 1 - 2 / (exp(2u) + 1): stable at both ends in fp32.
    t = 1.0 - 2.0 / (tl.exp(2.0 * inner) + 1.0)
    return 0.5 * x * (1.0 + t)


@triton.jit
def silu(x):
    return x / (1.0 + tl.exp(-x))


@triton.jit
def grouped_tile(i_p, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 GROUP_M: tl.constexpr):
    """(row tile, column tile) of program ``i_p`` in grouped order: GROUP_M row
    tiles sweep each column tile together, so weight tiles are reused from L2."""
    n_m = tl.cdiv(M, BLOCK_M)
    n_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * n_n
    first_m = (i_p // per_group) * GROUP_M
    size_m = tl.minimum(n_m - first_m, GROUP_M)
    return first_m + (i_p % per_group) % size_m, (i_p % per_group) // size_m


@triton.jit
def row_tile(i_t, n_rows, D, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """Rows of row tile ``i_t`` of a (n_rows, D) row-major tensor: row indices (int64),
    element offsets [BLOCK_R, BLOCK_D] and their mask."""
    i_r = i_t.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    o_d = tl.arange(0, BLOCK_D)
    m = (i_r < n_rows)[:, None] & (o_d < D)[None, :]
    return i_r, i_r[:, None] * D + o_d[None, :], m


@triton.jit
def load_row_vector(ptr, D, BLOCK_D: tl.constexpr):
    """A length-D vector of a row op (a norm's weight or bias) as fp32 [1, BLOCK_D],
    zero past D."""
    o_d = tl.arange(0, BLOCK_D)
    return tl.load(ptr + o_d, mask=o_d < D, other=0.0).to(tl.float32)[None, :]


@triton.jit
def split_k_arrive(p_ws, partial, i_s, counter_ptr, n_split, TILE: tl.constexpr):
    """Deterministic single-launch split-K, arrival side: store this split's fp32
    partial in slot ``i_s`` of its tile's workspace ``p_ws`` and count the arrival.
    True for the last split of the tile to arrive: every partial is then visible
    (each thread's store precedes the barrier and the gpu-scope acq_rel arrival), and
    that program sums the slots in split order, stores the tile and calls
    ``split_k_release`` (whoever arrives last, the sum is the same)."""
    tl.store(p_ws + i_s * TILE, partial)
    tl.debug_barrier()
    return tl.atomic_add(counter_ptr, 1, sem="acq_rel", scope="gpu") == n_split - 1


@triton.jit
def split_k_release(counter_ptr):
    """Reset the tile's arrival counter: zero again for the next call (the host keeps
    one zeroed buffer per stream and graph captures draw from a pre-zeroed pool)."""
    tl.atomic_xchg(counter_ptr, 0, sem="relaxed", scope="gpu")


@triton.jit
def prefetch_l2(ptr, nbytes):
    """Bulk L2 prefetch (sm_90+ inline PTX) of ``nbytes`` from each address in ``ptr``
    (16-byte aligned, a multiple of 16 bytes): a cache hint, nothing is read. The decode
    GEMMs issue it before waiting on the previous kernel (programmatic dependent
    launch), so their weight streams in while that kernel still runs."""
    tl.inline_asm_elementwise(
        "cp.async.bulk.prefetch.L2.global [$1], $2; // $0", "=r,l,r",
        [ptr, tl.full(ptr.shape, 0, tl.int32) + nbytes], dtype=tl.int32, is_pure=False, pack=1)
