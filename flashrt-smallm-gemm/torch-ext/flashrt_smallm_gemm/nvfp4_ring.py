"""NVFP4 weight-only linear for few rows on sm_90: the mma.sync kernel of ``nvfp4_mma``
fed from a TMA ring in shared memory.

``nvfp4_mma`` loads each K step's packed words and scale bytes straight into registers,
so the bytes in flight per SM are bounded by the registers of one or two steps, and
its warps wait on DRAM latency (Nsight Compute: 52-66% of cycles with no eligible warp).
Here one thread of the program issues TMA copies of ``STAGES`` K steps ahead into a
shared-memory ring (``mbarrier`` completion per slot): the weight tile [128 rows,
32 kc bytes] with the hardware swizzle of its width (the operand threads' 8-byte reads
of 8 rows then hit distinct banks) and the step's scale chunks, 512 contiguous bytes
per 64-wide column of the 128-row swizzled block (one 2-D box: the tile is exactly one
128-row block). The warps read their operand registers from the slot in the layouts of
``nvfp4_mma`` (the shared-memory reads are written as linear layouts that map onto
them with no data movement, ``assert_trivial``), decode and multiply exactly as there:
same K order, same arithmetic, same split-K and epilogue, so the same bits.

BF16 activations only (the weight-only linear); the activation tile is read from
global memory (L1 / L2 resident: every program reads the same rows) one step ahead,
as in ``nvfp4_mma``. TMA zero-fills rows and words past the weight's end, so ragged N
and K need no weight masks; the scale box may read past a block's last column into the
next block's scales, which only ever multiply those zero words.
"""

import functools

import torch

from ._host import cdiv, sm_count
from .nvfp4_mma import gluon, layouts

if gluon is not None:
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, tma
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from .nvfp4_mma import _finish, _mma_step

BN = 128  # weight rows per program: one 128-row block of the swizzled scales


def ring_config(M, N, KH, device, warps=4, kc=2, stages=4, waves=3, min_steps=4):
    """("ring", BM, 128, KC, n_split, steps_per_split, warps, row_reps, stages): 8 or 16
    activation rows, 128 weight rows over ``warps`` warps, K steps of 64 kc elements,
    ``stages`` steps in flight, and the most K splits that keep about ``waves`` programs
    per SM with >= ``min_steps`` steps per split."""
    bm = 8 if M <= 8 else 16
    steps = cdiv(KH // 8, 4 * kc)
    tiles = cdiv(N, BN)
    want = max(1, min(max(1, steps // min_steps), cdiv(waves * sm_count(device), tiles)))
    per_split = cdiv(steps, want)
    return ("ring", bm, BN, kc, cdiv(steps, per_split), per_split, warps, BN // (16 * warps),
            stages)


def supported(x_words, w, sfw):
    """TMA needs 16-byte aligned bases and row strides (K a multiple of 32)."""
    return (w.shape[1] % 16 == 0 and w.data_ptr() % 16 == 0 and sfw.data_ptr() % 16 == 0)


def _map(rj, kc):
    """Weight-tile coordinate (row r, block j) -> (column chunk, byte) of the step's
    scale slot [kc, 512]: byte (r & 31) 16 + ((r >> 5) & 3) 4 + (j & 3) of chunk j >> 2."""
    r, j = rj
    byte = (r & 31) * 16 + ((r >> 5) & 3) * 4 + (j & 3)
    return [j >> 2, byte]


@functools.lru_cache(maxsize=None)
def smem_layouts(warps, row_reps, kc, bm):
    """Register layouts of the slot reads: the packed words [128, 8 kc] (row, word =
    2 block + half) as ``nvfp4_mma``'s weight tile [128, 4 kc, 2], and the scale bytes
    [kc, 512] as the slice of that tile the scales live in (r, j)."""
    w_tile = layouts(warps, row_reps, kc, bm)[3]
    to_words = lambda b: [b[0], 2 * b[1] + b[2]]  # noqa: E731
    w_regs = gl.DistributedLinearLayout(
        reg_bases=[to_words(b) for b in w_tile.reg_bases],
        lane_bases=[to_words(b) for b in w_tile.lane_bases],
        warp_bases=[to_words(b) for b in w_tile.warp_bases], block_bases=[],
        shape=[BN, 8 * kc])
    to_scale = lambda b: _map(b[:2], kc)  # noqa: E731  (the word-half basis maps to [0, 0])
    s_regs = gl.DistributedLinearLayout(
        reg_bases=[to_scale(b) for b in w_tile.reg_bases],
        lane_bases=[to_scale(b) for b in w_tile.lane_bases],
        warp_bases=[to_scale(b) for b in w_tile.warp_bases], block_bases=[],
        shape=[kc, 512])
    return w_regs, s_regs


def launch(x, w, sfw, bias, out, M, alpha, cfg, ws, locks):
    """out = alpha x @ W^T (+ bias) with ``cfg`` from ``ring_config``. x: bf16 pairs as
    int32 [M, K / 2]; w: uint8 [N, K / 2]; sfw: the swizzled scales (flat, 16-byte
    aligned); ``ws`` / ``locks``: the split-K workspace and zeroed counters."""
    _, bm, bn, kc, n_split, per_split, warps, row_reps, stages = cfg
    N, KH = w.shape
    n_col_super = cdiv(KH // 8, 4)
    w_desc = TensorDescriptor(w.view(torch.int32), [N, KH // 4], [KH // 4, 1], [BN, 8 * kc],
                              gl.NVMMASharedLayout(32 * kc, 32))
    s_rows = cdiv(N, BN) * n_col_super
    s_words = sfw[:s_rows * 512].view(torch.int32).view(s_rows, 128)
    s_desc = TensorDescriptor(s_words, [s_rows, 128], [128, 1], [kc, 128],
                              gl.NVMMASharedLayout(0, 32))
    mma, a_op, b_op, w_tile, x_tile = layouts(warps, row_reps, kc, bm)
    w_regs, s_regs = smem_layouts(warps, row_reps, kc, bm)
    _nvfp4_ring_kernel[(cdiv(N, BN) * n_split,)](
        x.view(torch.int32), w_desc, s_desc, bias if bias is not None else out, out, ws, locks,
        M, N, KH, n_col_super, per_split, n_split, 2.0 ** 9, float(alpha),
        HAS_BIAS=bias is not None, SPLIT=n_split > 1, EVEN_K=(KH // 8) % (4 * kc) == 0,
        MMA=mma, A_OP=a_op, B_OP=b_op, W_TILE=w_tile, X_TILE=x_tile, W_REGS=w_regs,
        S_REGS=s_regs, BM=bm, KC=kc, STAGES=stages, num_warps=warps)


if gluon is not None:

    @gluon.jit
    def _issue(w_desc, s_desc, w_smem, s_smem, bars, slot, row0, word0, srow0, step, pred,
               KC: gl.constexpr):
        """TMA copies of K step ``step`` (weight words, scale chunks) into ``slot``."""
        bar = bars.index(slot)
        mbarrier.expect(bar, (128 * 32 + 512) * KC, pred=pred)
        tma.async_copy_global_to_shared(w_desc, [row0, word0 + step * (8 * KC)], bar,
                                        w_smem.index(slot), pred=pred)
        tma.async_copy_global_to_shared(s_desc, [srow0 + step * KC, 0], bar,
                                        s_smem.index(slot), pred=pred)

    @gluon.jit
    def _load_x(x_ptr, o_x, m_x, kb, i, KC4: gl.constexpr, n_blocks, EVEN_K: gl.constexpr):
        """Activation tile of K step ``i`` (bf16 pairs as int32 [BM, 4 kc, 8]; masked rows
        and, unless EVEN_K, blocks past K read 0)."""
        if EVEN_K:
            return gl.load(x_ptr + o_x + i * (8 * KC4), mask=m_x, other=0)
        return gl.load(x_ptr + o_x + i * (8 * KC4), mask=m_x & (kb + i * KC4 < n_blocks),
                       other=0)

    @gluon.jit(do_not_specialize=["M", "steps_per_split", "n_split"])
    def _nvfp4_ring_kernel(
        x_ptr, w_desc, s_desc, bias_ptr, out_ptr, ws_ptr, lock_ptr,
        M, N, KH, n_col_super, steps_per_split, n_split, out_scale, alpha,
        HAS_BIAS: gl.constexpr, SPLIT: gl.constexpr, EVEN_K: gl.constexpr,
        MMA: gl.constexpr, A_OP: gl.constexpr, B_OP: gl.constexpr,
        W_TILE: gl.constexpr, X_TILE: gl.constexpr, W_REGS: gl.constexpr, S_REGS: gl.constexpr,
        BM: gl.constexpr, KC: gl.constexpr, STAGES: gl.constexpr,
    ):
        """acc[n, m] = sum_k W[n, k] x[m, k] for weight rows [tile 128, + 128) and K steps
        [split steps_per_split, + steps_per_split) of 64 kc elements each."""
        KC4: gl.constexpr = 4 * KC
        i_p = gl.program_id(0)
        i_n = i_p // n_split
        i_s = i_p % n_split
        n_steps = gl.cdiv(KH // 8, KC4)
        st_lo = i_s * steps_per_split
        n_local = gl.minimum(n_steps, st_lo + steps_per_split) - st_lo
        kb0 = st_lo * KC4  # first block of this split
        n_blocks = KH // 8

        w_smem = gl.allocate_shared_memory(gl.int32, [STAGES, 128, 8 * KC], w_desc.layout)
        s_smem = gl.allocate_shared_memory(gl.int32, [STAGES, KC, 128], s_desc.layout)
        bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for st in gl.static_range(STAGES):
            mbarrier.init(bars.index(st), count=1)
        fence_async_shared()
        row0 = i_n * 128
        word0 = kb0 * 2
        srow0 = i_n * n_col_super + (kb0 >> 2)
        for st in gl.static_range(STAGES):
            _issue(w_desc, s_desc, w_smem, s_smem, bars, st, row0, word0, srow0, st,
                   st < n_local, KC)

        # activation: bf16 pairs as int32 [BM, 4 kc, 8] (row m, block j, pair q -> m K/2 +
        # 8 j + q), as in nvfp4_mma
        L_XM: gl.constexpr = gl.SliceLayout(1, gl.SliceLayout(2, X_TILE))
        L_XJ: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(2, X_TILE))
        L_XQ: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(1, X_TILE))
        m3 = gl.expand_dims(gl.expand_dims(gl.arange(0, BM, layout=L_XM), 1), 2)
        jx3 = gl.expand_dims(gl.expand_dims(gl.arange(0, KC4, layout=L_XJ), 0), 2)
        q3 = gl.expand_dims(gl.expand_dims(gl.arange(0, 8, layout=L_XQ), 0), 1)
        o_x = m3 * KH + (kb0 + jx3) * 8 + q3
        m_x = m3 < M
        kb_x = kb0 + jx3
        plain: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, order=[1, 0])

        acc = gl.zeros([128, BM], gl.float32, MMA)
        x = _load_x(x_ptr, o_x, m_x, kb_x, 0, KC4, n_blocks, EVEN_K)
        for i in range(n_local):
            slot = i % STAGES
            mbarrier.wait(bars.index(slot), (i // STAGES) & 1)
            w = w_smem.index(slot).load(W_REGS)
            s = s_smem.index(slot)._reinterpret(gl.uint8, [KC, 512], plain).load(S_REGS)
            gl.thread_barrier()  # every warp holds its registers of the slot: refill it
            _issue(w_desc, s_desc, w_smem, s_smem, bars, slot, row0, word0, srow0,
                   i + STAGES, i + STAGES < n_local, KC)
            # after the refill: its proxy fence waits for this thread's loads in flight
            x1 = _load_x(x_ptr, o_x, m_x, kb_x, gl.minimum(i + 1, n_local - 1), KC4, n_blocks,
                         EVEN_K)
            w = gl.convert_layout(gl.reshape(w, [128, KC4, 2]), W_TILE, assert_trivial=True)
            # scale bytes (chunk c, byte 16 (r & 31) + 4 ((r >> 5) & 3) + t) -> (r, 4 c + t)
            s = gl.permute(gl.reshape(s, [KC, 32, 4, 4]), [2, 1, 0, 3])
            s = gl.convert_layout(gl.reshape(s, [128, KC4]), gl.SliceLayout(2, W_TILE),
                                  assert_trivial=True)
            acc = _mma_step(w, s, x, 0, acc, A_OP, B_OP, False)
            x = x1
        _finish(acc, i_n, i_s, n_split, M, N, out_scale * alpha, bias_ptr, out_ptr, ws_ptr,
                lock_ptr, HAS_BIAS, SPLIT, 8)
