"""Warp-specialized FP8 GEMM for sm_90, written in Gluon: the 128 x 128 tiles of the
persistent TMA path (``fp8_gemm.gemm_config`` "tma" with BLOCK_M = BLOCK_N = 128,
non-gated epilogues).

Same numerics as ``fp8_gemm._fp8_gemm_tma_kernel``: each 128-wide K block is summed in
the tensor core from zero, then added to the fp32 accumulator in K order, and the same
``_epilogue`` runs on the result, so the two kernels give the same bits (checked on H200
on every probe shape, and by the GPU tests); fused == staged and the other equalities of
the spec are unaffected. What differs is the schedule, which ``tl.dot`` does not let us
write:

* one producer warp issues the TMA loads into a ``STAGES``-slot ring (a ``ready`` and an
  ``empty`` mbarrier per slot);
* two 4-warp consumer partitions each own one 64-row half of the tile. A consumer issues
  the wgmma of two K blocks, adds the first block's partial while the second block's
  wgmma runs, then the second's, and frees each slot as soon as its wgmma has retired.
  The halves are released independently (``empty`` counts 2), so one warp group's
  additions can overlap the other's wgmma. In Triton's software pipeline of the
  promoted loop, both warp groups wait for every block's wgmma before its additions,
  in lockstep.
* No wgmma is in flight across a loop back edge: ptxas (C7514) serializes every wgmma
  of a loop that reads an accumulator still in flight there. So the loop handles two
  blocks per iteration, and an odd block count gets a phantom last block: its barrier
  wait is predicated off, it runs on stale shared memory and it is dropped.

Measured on H200 (graph replay over L2-rotated operands; benchmarks/tune_fp8_gluon.py,
us, this kernel against the Triton TMA kernel on the same tile, torch._scaled_mm):
8192^3 1155 / 1224 / 890; PI0.5 decoder up M = 4096 39.5 / 48.7 / 34.9, down
M = 4096 34.8 / 40.5 / 27.3; encoder down (560, 16384 -> 2048) 59.0 / 71.9 / 33.8;
M = 512 / 1024 up 8.37 / 9.00 and 12.9 / 14.0. It does not replace the smaller tiles
(64-row tiles of the down projections at M = 512-1024: 15.5 against 11.8 us).

Gluon kernels do not run in Triton's interpreter: off sm_90, interpreting, or on a
Triton release other than the verified one, the Triton TMA kernel runs (``available``). One source of truth: common/fp8_wgmma.py, copied
by `flashrt sync` next to fp8_gemm.py.
"""

import functools
import os

import torch
import triton
import triton.language as tl

from ._helpers import grouped_tile
from ._host import cdiv
from .fp8_gemm import _epilogue, _epilogue_operands  # fp8_gemm imports this module lazily

try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared,
                                                                  mbarrier, tma,
                                                                  warpgroup_mma,
                                                                  warpgroup_mma_wait)
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor as GluonDescriptor
except ImportError:  # a Triton without Gluon: the Triton TMA kernel runs instead
    gluon = None

TILE = 128  # BLOCK_M = BLOCK_N = BLOCK_K; the kernels' constexpr copies below
BLOCK_M = BLOCK_N = BLOCK_K = tl.constexpr(TILE)
GROUP_M = tl.constexpr(8)
STAGES = 4  # slots of 32 KB (A and W) in the ring; + the epilogue's conversion scratch
CONSUMER_REGS = tl.constexpr(232)  # registers a thread of the second consumer partition
PRODUCER_REGS = tl.constexpr(40)


# Whether the package rule (fp8_gemm.launch_with_config) runs this kernel where it can
# (the GPU suites of both FP8 packages pass with it: H200, 439 tests).
IN_RULE = True


# Gluon is experimental and its API moves between Triton releases: the kernel runs only on
# the release it was verified with (elsewhere the Triton TMA kernel, the same bits).
VERIFIED_TRITON = (3, 6)


def toolchain_ok():
    """Gluon importable and Triton the verified release (major, minor)."""
    return (gluon is not None
            and tuple(int(v) for v in triton.__version__.split(".")[:2]) == VERIFIED_TRITON)


def available(device):
    """Whether this kernel can run on ``device``: an sm_90 GPU, the verified Triton with
    Gluon, no interpreter."""
    return (toolchain_ok() and device.type == "cuda" and torch.cuda.is_available()
            and os.environ.get("TRITON_INTERPRET") != "1"
            and _is_sm90(device.index if device.index is not None
                         else torch.cuda.current_device()))


def usable(a, cfg, gated):
    """Whether config ``cfg`` can run through this kernel: a 128 x 128 TMA tile, no gated
    epilogue, ``a`` on a device where it is ``available``."""
    return (cfg[0] == "tma" and cfg[1] == TILE and cfg[2] == TILE and not gated
            and available(a.device))


@functools.lru_cache(maxsize=None)
def _is_sm90(device_index):
    return torch.cuda.get_device_capability(device_index) == (9, 0)


if gluon is not None:
    @gluon.jit
    def _producer(a_desc, w_desc, a_bufs, w_bufs, ready, empty, M, N, K, programs,
                  STAGES: gl.constexpr):
        pid = gl.program_id(0)
        n_k = gl.cdiv(K, BLOCK_K)
        total = gl.cdiv(gl.cdiv(M, BLOCK_M) * gl.cdiv(N, BLOCK_N) - pid, programs) * n_k
        for p in range(total):
            s = p % STAGES
            # both consumers released the slot's previous block (a fresh barrier passes)
            mbarrier.wait(empty.index(s), ((p // STAGES) & 1) ^ 1)
            i_m, i_n = grouped_tile(pid + (p // n_k) * programs, M, N, BLOCK_M, BLOCK_N,
                                    GROUP_M)
            bar = ready.index(s)
            mbarrier.expect(bar, (BLOCK_M + BLOCK_N) * BLOCK_K)
            k = (p % n_k) * BLOCK_K
            tma.async_copy_global_to_shared(a_desc, [i_m * BLOCK_M, k], bar, a_bufs.index(s))
            tma.async_copy_global_to_shared(w_desc, [i_n * BLOCK_N, k], bar, w_bufs.index(s))

    @gluon.jit
    def _issue(a_bufs, w_bufs, ready, zero, c, total, ROW0: gl.constexpr,
               SUB_M: gl.constexpr, STAGES: gl.constexpr):
        """Block c's wgmma on this half's rows, from zero (c == total: the phantom)."""
        s = c % STAGES
        mbarrier.wait(ready.index(s), (c // STAGES) & 1, pred=c < total)
        return warpgroup_mma(a_bufs.index(s).slice(ROW0, SUB_M), w_bufs.index(s).permute((1, 0)),
                             zero, use_acc=False, is_async=True)

    @gluon.jit
    def _release(empty, c, total, STAGES: gl.constexpr):
        gl.thread_barrier()  # every warp of this partition has retired block c's wgmma
        mbarrier.arrive(empty.index(c % STAGES), pred=c < total)

    @gluon.jit
    def _retire(acc, part, zero, c, total, n_k, pid, programs, sa_ptr, sw_ptr, bias_ptr,
                so_ptr, c_ptr, q_ptr, M, N, ldc, EPI: gl.constexpr, ROW0: gl.constexpr,
                SUB_M: gl.constexpr, OUT: gl.constexpr):
        """acc + block c's partial; after a tile's last block, its epilogue (the Triton
        kernels' ``_epilogue``, on a coalescing layout) and a fresh accumulator."""
        acc = acc + part
        if (c + 1) % n_k == 0 and c < total:
            i_m, i_n = grouped_tile(pid + (c // n_k) * programs, M, N, BLOCK_M, BLOCK_N,
                                    GROUP_M)
            o_m = i_m * BLOCK_M + ROW0 + gl.arange(0, SUB_M, layout=gl.SliceLayout(1, OUT))
            o_n = i_n * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, OUT))
            s, b, inv = _epilogue_operands(sa_ptr, sw_ptr, bias_ptr, so_ptr, o_n[None, :], N,
                                           EPI, False)
            y = gl.convert_layout(acc, OUT)
            _epilogue(y, y, s, b, inv, o_m[:, None], o_n[None, :], M, N, ldc, c_ptr, q_ptr,
                      EPI, False, 0)
            acc = zero
        return acc

    @gluon.jit
    def _consumer(a_bufs, w_bufs, ready, empty, sa_ptr, sw_ptr, bias_ptr, so_ptr, c_ptr, q_ptr,
                  M, N, K, ldc, programs, EPI: gl.constexpr, HALF: gl.constexpr,
                  STAGES: gl.constexpr):
        SUB_M: gl.constexpr = BLOCK_M // 2
        ROW0: gl.constexpr = HALF * SUB_M
        MMA: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                      instr_shape=[16, BLOCK_N, 32])
        OUT: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
        pid = gl.program_id(0)
        n_k = gl.cdiv(K, BLOCK_K)
        total = gl.cdiv(gl.cdiv(M, BLOCK_M) * gl.cdiv(N, BLOCK_N) - pid, programs) * n_k
        zero = gl.zeros([SUB_M, BLOCK_N], gl.float32, MMA)
        acc = zero
        for c in range(0, total + total % 2, 2):
            pa = _issue(a_bufs, w_bufs, ready, zero, c, total, ROW0, SUB_M, STAGES)
            pb = _issue(a_bufs, w_bufs, ready, zero, c + 1, total, ROW0, SUB_M, STAGES)
            done = warpgroup_mma_wait(1, deps=[pa])  # pb's wgmma runs during the additions
            _release(empty, c, total, STAGES)
            acc = _retire(acc, done, zero, c, total, n_k, pid, programs, sa_ptr, sw_ptr,
                          bias_ptr, so_ptr, c_ptr, q_ptr, M, N, ldc, EPI, ROW0, SUB_M, OUT)
            done = warpgroup_mma_wait(0, deps=[pb])
            _release(empty, c + 1, total, STAGES)
            acc = _retire(acc, done, zero, c + 1, total, n_k, pid, programs, sa_ptr, sw_ptr,
                          bias_ptr, so_ptr, c_ptr, q_ptr, M, N, ldc, EPI, ROW0, SUB_M, OUT)

    @gluon.jit
    def _fp8_gemm_ws_kernel(a_desc, w_desc, sa_ptr, sw_ptr, bias_ptr, so_ptr, c_ptr, q_ptr,
                            M, N, K, ldc, programs, EPI: gl.constexpr, STAGES: gl.constexpr):
        a_bufs = gl.allocate_shared_memory(a_desc.dtype, [STAGES, BLOCK_M, BLOCK_K],
                                           a_desc.layout)
        w_bufs = gl.allocate_shared_memory(w_desc.dtype, [STAGES, BLOCK_N, BLOCK_K],
                                           w_desc.layout)
        ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(STAGES):
            mbarrier.init(ready.index(i), count=1)
            mbarrier.init(empty.index(i), count=2)  # one arrival per consumer half
        fence_async_shared()
        gl.warp_specialize([
            (_consumer, (a_bufs, w_bufs, ready, empty, sa_ptr, sw_ptr, bias_ptr, so_ptr, c_ptr,
                         q_ptr, M, N, K, ldc, programs, EPI, 0, STAGES)),
            (_consumer, (a_bufs, w_bufs, ready, empty, sa_ptr, sw_ptr, bias_ptr, so_ptr, c_ptr,
                         q_ptr, M, N, K, ldc, programs, EPI, 1, STAGES)),
            (_producer, (a_desc, w_desc, a_bufs, w_bufs, ready, empty, M, N, K, programs,
                         STAGES)),
        ], [4, 1], [CONSUMER_REGS, PRODUCER_REGS])


def launch(a, w, sa, sw, c, bias, so, q, epi, sms, stages=STAGES):
    """c (and q) <- epilogue(A @ W^T) through ``_fp8_gemm_ws_kernel`` (arguments as
    ``fp8_gemm.launch_with_config``'s, placeholders already filled in; ``stages``: a
    sweep option)."""
    M, K = a.shape
    N = w.shape[0]
    layout = gl.NVMMASharedLayout.get_default_for([TILE, TILE], gl.float8e4nv)
    programs = min(cdiv(M, TILE) * cdiv(N, TILE), sms)
    _fp8_gemm_ws_kernel[(programs,)](
        GluonDescriptor.from_tensor(a, [TILE, TILE], layout),
        GluonDescriptor.from_tensor(w, [TILE, TILE], layout),
        sa, sw, bias, so, c, q, M, N, K, c.shape[1], programs, EPI=epi, STAGES=stages,
        num_warps=4)
