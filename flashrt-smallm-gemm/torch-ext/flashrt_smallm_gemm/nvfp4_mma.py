"""NVFP4 weight-only linear for few rows on sm_90, written in Gluon: mma.sync from
registers, no shared memory.

Triton's ``tl.dot`` on Hopper picks wgmma for the weight tiles of ``smallm._dot_kernel``,
and wgmma reads its second operand from shared memory: the activation tile goes through
shared memory every K step, behind barriers, and the decode has to match a layout Triton
chooses. Here both operands of a ``mma.sync.m16n8k16`` (``mma_v2``) are built in the
registers of the thread that loaded them:

* K order. The MMA's A operand thread (g, t) = (lane / 4, lane % 4) holds, of every 16-wide
  k step, the k pairs 2t, 2t + 1 and 2t + 8, 2t + 9 of rows g and g + 8. Over a 64-wide
  chunk (4 k steps, ``c``) that is 16 elements per row: the dot's index
  k = 16c + 8a + 2t + b is mapped to the weight element 16t + 4c + 2a + b, so a thread
  holds exactly the 16 elements of NVFP4 block t: 8 contiguous bytes (one 8-byte load)
  and one scale byte per row. The order of k is free as long as the activation uses the
  same one (it holds k pairs 2t, 2t + 1, 2t + 8, 2t + 9 of column g: 16 contiguous bf16 of
  row g, two 16-byte loads).
* Decode: smallm's element-wise PTX (byte permute, shifts, LOP3, one bf16x2 multiply by
  the block scale): byte p of the block gives the bf16 pair (element 2p, 2p + 1), the
  register pair the MMA operand wants. Exact: e2m1 x 2^-126 times the scale x 2^117 is
  the weight x 2^-9 with <= 6 significant bits (spec §7.3); the 2^-9 is undone in the
  output scale.
* The joins / permutes that put the decoded values in k order move no data: the layouts
  are written out so the conversion to the MMA operand layouts is a renaming of
  registers (``assert_trivial``).

Work split: a program owns 16 x WARPS x ROW_REPS weight rows (warp w: rows 16w + 16
WARPS r), all activation rows (BM = 8 or 16), and ``chunks_per_split`` 64-wide K chunks;
K is split over programs when the row tiles alone do not fill the GPU, with smallm's
deterministic single-launch split-K (fp32 partials in a workspace, the last split to
arrive sums them in split order, with the loads of SUM_BATCH partials in flight at once:
4096x1024 M = 4, 32 splits, 5.3 -> 4.8 µs, 16384x2048 M = 16 19.2 -> 17.1, the other
rule shapes within 1%; H200, tune_smallm.2026-12-03.sum-batch.json / ring-probe.json).
Loads of the next K step are issued before the current one is decoded (a register
double buffer). Where ``uses_pdl_rule`` holds the launch is a programmatic dependent
one, as smallm's: the program bulk-prefetches its weight slice and scale chunks into L2,
waits for the previous kernel (``griddepcontrol.wait``, before any read) and lets the
next one launch.
"""

import functools
import math

import torch
import triton

from ._host import cdiv, interpreting, sm_count

try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.ampere import mma_v2
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # a Triton without Gluon: smallm's Triton kernels run instead
    gluon = None

VERIFIED_TRITON = (3, 6)  # Gluon's API moves between releases: run only on this one
SUM_BATCH = 8  # split-K partials whose loads the last split has in flight at once (its sum)
CHUNK = 64  # K elements per MMA operand chunk (4 k steps of 16; one NVFP4 block per thread)


def toolchain_ok():
    return (gluon is not None
            and tuple(int(p) for p in triton.__version__.split(".")[:2]) == VERIFIED_TRITON)


# Whether the package rule (smallm.gemm_config) takes this kernel where it can run (the
# package's GPU suite passes with it: H200).
IN_RULE = True


def uses_pdl_rule(N, K, a_fp4):
    """Whether the rule launches it with programmatic dependent launch (+ the L2 prefetch
    where smallm._prefetches allows it). H200 sweep (tune_smallm.py, record
    tune_smallm.2026-12-03.pdl.json; graph replay, µs without -> with): weight-only linear
    M = 4 / 10 / 16 at K <= 4096 5-16% faster (M = 4: 1024x8192 6.3 -> 6.0, 4096x1024
    6.1 -> 5.2, 2048x16384 11.9 -> 11.1), at 16384x2048 13-14% slower (12.3 -> 13.9); the
    W4A4 matvec faster only at 4096x1024 (6.5 -> 5.4 at M = 4), 1-33% slower on the other
    shapes."""
    return K <= 4096 and (not a_fp4 or N <= 2048)


def available(device):
    """Whether the kernel can run on ``device``: sm_90 (mma.sync and the layouts above are
    written for it), not the interpreter (Gluon does not run there), the verified Triton."""
    return (device.type == "cuda" and not interpreting() and toolchain_ok()
            and torch.cuda.get_device_capability(device) == (9, 0))


def tile_rule(bm, N, K):
    """(warps, row_reps, kc, waves, depth) of the launch rule, from the H200 sweep
    (benchmarks/tune_smallm.py --mma, record tune_smallm.2026-12-03.mma.json; µs at
    K x N = 1024x8192 / 4096x1024 / 2048x16384 / 16384x2048, BF16 F.linear 6.8 / 7.7 /
    18.4 / 21.3 at M = 4):

    * 8 activation rows: 64 weight rows x 4 warps, 128-element steps, one step in
      flight, ~4 programs per SM (M = 4: 6.0 / 5.9 / 13.9 / 12.4); where the weight is
      wide and short (N >= 8192, K <= 4096) 128 rows, 64-element steps, two steps in
      flight, ~3.5 per SM (2048x16384: 11.9; 3.5 rather than the sweep's 3 from the
      steps-per-program sweep, tune_smallm.2026-12-03.steps.json: at 1024x8192 8 splits
      of 2 steps, 5.0 µs, against 6 of 3, 5.8; 2048x16384 keeps 4 of 8, 11.2);
    * 16 rows: 128 rows x 4 warps, 64-element steps, ~3 per SM, one step in flight for
      the large weights (M = 16 2048x16384 / 16384x2048: 13.9 / 16.9), 128-element steps
      for 1024x8192 (7.1), the 8-row rule's tile at N <= 2048 (4096x1024: 6.9).

    The other tiles of the sweep were within 2-40% of these on every shape."""
    large = N * K >= (1 << 25)
    if bm == 8:
        return (4, 2, 1, 3.5, 2) if N >= 8192 and K <= 4096 else (4, 1, 2, 4, 1)
    if large:
        return (4, 2, 1, 3, 1)
    return (4, 1, 2, 4, 1) if N <= 2048 else (4, 2, 2, 3, 1)


def mma_config(M, N, KH, device, warps=None, row_reps=None, kc=None, waves=None,
               min_steps=2, depth=None):
    """("mma", BM, BN, KC, n_split, steps_per_split, warps, row_reps, depth): 8 or 16
    activation rows, 16 x warps x row_reps weight rows per program, K steps of 64 kc
    elements with ``depth`` (1 or 2) steps of loads in flight, and the most K splits that
    keep about ``waves`` programs per SM with >= ``min_steps`` steps per split. Unset
    arguments come from ``tile_rule``."""
    bm = 8 if M <= 8 else 16
    rule = tile_rule(bm, N, 2 * KH)
    warps = warps or rule[0]
    row_reps = row_reps or rule[1]
    kc = kc or rule[2]
    waves = rule[3] if waves is None else waves
    depth = depth or rule[4]
    bn = 16 * warps * row_reps
    steps = cdiv(KH // 8, 4 * kc)
    tiles = cdiv(N, bn)
    want = max(1, min(max(1, steps // min_steps), math.ceil(waves * sm_count(device) / tiles)))
    per_split = cdiv(steps, want)
    return ("mma", bm, bn, kc, cdiv(steps, per_split), per_split, warps, row_reps, depth)


def launch(x, sfx, w, sfw, bias, out, M, alpha, cfg, ws, locks, pdl=False, prefetch=False,
           sum_batch=SUM_BATCH):
    """out = alpha x @ W^T (+ bias) with ``cfg`` from ``mma_config``. x: bf16 pairs as
    int32 [M, K / 2] (contiguous rows; ``sfx`` None) or NVFP4 bytes [M, K / 2] with
    swizzled scales ``sfx`` (4-byte aligned); w: uint8 [N, K / 2] (4-byte aligned); ``ws`` /
    ``locks``: the split-K workspace and zeroed counters (one per row tile); ``sum_batch``:
    partials the last split loads at once (the bits do not depend on it). ``pdl``:
    programmatic dependent launch (every read after griddepcontrol.wait); ``prefetch``:
    with it, the program's weight slice and scale chunks bulk-prefetched into L2 before
    the wait (16-byte aligned rows and scales: smallm._prefetches)."""
    _, bm, bn, kc, n_split, per_split, warps, row_reps, depth = cfg
    N, KH = w.shape
    a_fp4 = sfx is not None
    mma, a_op, b_op, w_tile, x_tile = layouts(warps, row_reps, kc, bm, a_fp4)
    _nvfp4_mma_kernel[(cdiv(N, bn) * n_split,)](
        x.view(torch.int32), sfx if a_fp4 else sfw, w.view(torch.int32), sfw,
        bias if bias is not None else out, out, ws, locks,
        M, N, KH, cdiv(KH // 8, 4), per_split, n_split, 2.0 ** (18 if a_fp4 else 9),
        float(alpha), A_FP4=a_fp4, HAS_BIAS=bias is not None, SPLIT=n_split > 1,
        EVEN_K=(KH // 8) % (4 * kc) == 0, EVEN_N=N % bn == 0,
        MMA=mma, A_OP=a_op, B_OP=b_op, W_TILE=w_tile, X_TILE=x_tile, BN=bn, BM=bm, KC=kc,
        DEPTH=depth, PDL=pdl, PREFETCH=pdl and prefetch, PF=_row_layout(warps),
        SUM_BATCH=sum_batch, num_warps=warps,
        **({"launch_pdl": True} if pdl else {}))


def _pow2_bases(count, unit, rank, dim):
    """Bases for ``count`` (a power of two) steps of ``unit`` along ``dim``."""
    bases, step = [], unit
    while step < unit * count:
        b = [0] * rank
        b[dim] = step
        bases.append(b)
        step *= 2
    return bases


@functools.lru_cache(maxsize=None)
def _row_layout(warps):
    """One element per thread over the program (the prefetch's weight rows)."""
    return gl.BlockedLayout(size_per_thread=[1], threads_per_warp=[32], warps_per_cta=[warps],
                            order=[0])


@functools.lru_cache(maxsize=None)
def layouts(warps, row_reps, kc, bm, a_fp4=False):
    """The kernel's layouts (host side; constexpr arguments): MMA accumulator, the two
    operand layouts, the packed-weight tile [BN, 4 kc, 2] (int32 words: row, block, word
    of the block), and the activation tile: bf16 pairs [BM, 4 kc, 8] (row, block, int32
    pair) or, NVFP4, words [BM, 4 kc, 2]. Lanes (t, g) as in the MMA operands: t along the blocks of
    a 64-wide chunk, g along the rows."""
    mma = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[warps, 1],
                                    instr_shape=[16, 8])
    a_op = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_op = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    bn = 16 * warps * row_reps
    lanes = [[0, 1, 0], [0, 2, 0], [1, 0, 0], [2, 0, 0], [4, 0, 0]]
    w_tile = gl.DistributedLinearLayout(
        reg_bases=[[0, 0, 1], [8, 0, 0]] + _pow2_bases(kc, 4, 3, 1)
        + _pow2_bases(row_reps, 16 * warps, 3, 0),
        lane_bases=lanes, warp_bases=_pow2_bases(warps, 16, 3, 0), block_bases=[],
        shape=[bn, 4 * kc, 2])
    per_block = 2 if a_fp4 else 8  # int32 words of a block in a thread
    x_tile = gl.DistributedLinearLayout(
        reg_bases=_pow2_bases(per_block, 1, 3, 2)
        + ([[8, 0, 0]] if bm == 16 else []) + _pow2_bases(kc, 4, 3, 1),
        lane_bases=lanes, warp_bases=[[0, 0, 0]] * (warps.bit_length() - 1), block_bases=[],
        shape=[bm, 4 * kc, per_block])
    return mma, a_op, b_op, w_tile, x_tile


# UE4M3 byte $1 -> bf16x2 word $0 = (s, s), s = scale x 2^117 (``_scale_pairs``)
_SCALE_PAIR_PTX = """{
.reg .b32 e2, x, y;
.reg .pred p;
mul.lo.u32 e2, $1, 0x00010001;
shl.b32 x, e2, 4;
and.b32 x, x, 0x07F007F0;
shl.b32 y, e2, 8;
lop3.b32 x, x, y, 0x80008000, 0xF8;
mov.b32 y, 0x7F007F00;
mul.rn.bf16x2 x, x, y;
mov.b32 y, 0x76807680;
mul.rn.bf16x2 x, x, y;
and.b32 y, $1, 0x7F;
setp.eq.u32 p, y, 0x7F;
selp.b32 $0, 0, x, p;
}"""

if gluon is not None:
    # smallm's PTX decode of an int16 pair ($4, pack = 2) times its block scale word $5
    # (here an int32 element; $6, the pair's second one, is the same word). smallm imports
    # this module lazily, so this import is not circular.
    from .smallm import _E2M1_QUAD

    _SCALE_PAIR = gl.constexpr(_SCALE_PAIR_PTX)

    @gluon.jit
    def _scale_pairs(e):
        """UE4M3 scale bytes (int32 [..]) -> int32 bf16x2 words (s, s), s = the scale x 2^117
        (exact; 0x7F / 0xFF -> 0): the bf16 pattern (mag << 4 | sign << 15) is the scale x
        2^-120 (a bf16 subnormal when its exponent is 0), times 2^127 and 2^110."""
        return gl.inline_asm_elementwise(_SCALE_PAIR, "=r,r", [e], dtype=gl.int32,
                                         is_pure=True, pack=1)

    @gluon.jit
    def _prefetch_l2(ptr, nbytes, pred):
        """Bulk L2 prefetch of ``nbytes`` (int32, a multiple of 16) from each address of
        ``ptr`` (16-byte aligned) where ``pred`` is non-zero: a cache hint, nothing is read."""
        gl.inline_asm_elementwise(
            "{ .reg .pred p; setp.ne.u32 p, $3, 0; @p cp.async.bulk.prefetch.L2.global [$1], $2; }"
            " // $0", "=r,l,r,r", [ptr, nbytes, pred], dtype=gl.int32, is_pure=False, pack=1)

    @gluon.jit
    def _load_step(w_ptr, sfw_ptr, x_ptr, sfx_ptr, o_w, p_sf, o_x, p_sfx, m_w, m_sf, m_x,
                   m_sfx, i, MASK_W: gl.constexpr, A_FP4: gl.constexpr):
        """Raw loads of K step ``i`` (units of 4 kc blocks): packed words, scale bytes,
        activation tile and, for NVFP4 activations (A_FP4), their scale bytes (else 0).
        MASK_W: the weight's masks apply (else every row and block is in range)."""
        KC4: gl.constexpr = o_w.shape[1]
        # scale byte of block (4 kc i + j): swizzled column (blk >> 2) * 512 + (blk & 3)
        if MASK_W:
            w = gl.load(w_ptr + o_w + i * (2 * KC4), mask=m_w, other=0)
            s = gl.load(p_sf + i * (KC4 // 4) * 512, mask=m_sf, other=0)
        else:
            w = gl.load(w_ptr + o_w + i * (2 * KC4))
            s = gl.load(p_sf + i * (KC4 // 4) * 512)
        if A_FP4:
            x = gl.load(x_ptr + o_x + i * (2 * KC4), mask=m_x, other=0)
            sx = gl.load(p_sfx + i * (KC4 // 4) * 512, mask=m_sfx, other=0)
        else:
            x = gl.load(x_ptr + o_x + i * (8 * KC4), mask=m_x, other=0)
            sx = 0
        return w, s, x, sx

    @gluon.jit
    def _decode(w, s):
        """Packed NVFP4 words [R, 4 kc, 2] (row, block, word) and their scale bytes [R, 4 kc]
        -> bf16 [R, 64 kc] in the k order (elements x 2^-9, exact)."""
        R: gl.constexpr = w.shape[0]
        KC4: gl.constexpr = w.shape[1]
        s = _scale_pairs(s.to(gl.int32))
        s = gl.broadcast(gl.expand_dims(s, 2), w)[0]
        # int32 words -> int16 pairs (loads and loop-carried registers stay 32-bit)
        w = gl.reshape(gl.join(w.to(gl.int16), (w >> 16).to(gl.int16)), [R, KC4, 4])
        s = gl.reshape(gl.join(s, s), [R, KC4, 4])
        lo_a, hi_a, lo_b, hi_b = gl.inline_asm_elementwise(
            _E2M1_QUAD, "=r,=r,=r,=r,r,r,r", [w, s],
            dtype=(gl.bfloat16, gl.bfloat16, gl.bfloat16, gl.bfloat16), is_pure=True, pack=2)
        # The asm's output register j of int16 pair (e', e' + 1) holds byte a, nibble b of
        # both: elements (x, x + 4), x = 4 e' + 2a + b of the block. The k order makes that
        # pair the MMA's k pair: element 8 e1 + 4 e0 + 2a + b of block t (e' = 2 e1 + e0)
        # -> k = 32a + 16b + 8 e1 + 2t + e0 within each 64-wide chunk.
        t = gl.join(gl.join(lo_a, hi_a), gl.join(lo_b, hi_b))  # [R, 4 kc, 4e', 2b, 2a]
        t = gl.reshape(t, [R, KC4 // 4, 4, 2, 2, 2, 2])  # (row, chunk, t, e1, e0, b, a)
        return gl.reshape(gl.permute(t, [0, 1, 6, 5, 3, 2, 4]), [R, 16 * KC4])

    @gluon.jit
    def _mma_step(w, s, x, sx, acc, A_OP: gl.constexpr, B_OP: gl.constexpr,
                  A_FP4: gl.constexpr):
        a = gl.convert_layout(_decode(w, s), A_OP, assert_trivial=True)
        if A_FP4:  # the same decode, the same k order
            xt = _decode(x, sx)
        else:  # bf16: element 8 e1 + 4 e0 + 2a + b of block t, as for the weight
            BM: gl.constexpr = x.shape[0]
            KC4: gl.constexpr = x.shape[1]
            # int32 pairs -> bf16 elements (loads and loop-carried registers stay 32-bit)
            xt = gl.join(x.to(gl.int16).to(gl.bfloat16, bitcast=True),
                         (x >> 16).to(gl.int16).to(gl.bfloat16, bitcast=True))
            xt = gl.reshape(xt, [BM, KC4 // 4, 4, 2, 2, 2, 2])  # (row, chunk, t, e1, e0, a, b)
            xt = gl.reshape(gl.permute(xt, [0, 1, 5, 6, 3, 2, 4]), [BM, 16 * KC4])
        b = gl.convert_layout(gl.permute(xt, [1, 0]), B_OP)
        return mma_v2(a, b, acc)

    @gluon.jit(do_not_specialize=["M", "steps_per_split", "n_split"])
    def _nvfp4_mma_kernel(
        x_ptr, sfx_ptr, w_ptr, sfw_ptr, bias_ptr, out_ptr, ws_ptr, lock_ptr,
        M, N, KH, n_col_super, steps_per_split, n_split, out_scale, alpha,
        A_FP4: gl.constexpr, HAS_BIAS: gl.constexpr, SPLIT: gl.constexpr, EVEN_K: gl.constexpr,
        EVEN_N: gl.constexpr,
        MMA: gl.constexpr, A_OP: gl.constexpr, B_OP: gl.constexpr,
        W_TILE: gl.constexpr, X_TILE: gl.constexpr,
        BN: gl.constexpr, BM: gl.constexpr, KC: gl.constexpr, DEPTH: gl.constexpr,
        PDL: gl.constexpr, PREFETCH: gl.constexpr, PF: gl.constexpr, SUM_BATCH: gl.constexpr,
    ):
        """acc[n, m] = sum_k W[n, k] x[m, k]: program (tile, split) owns weight rows
        [tile BN, + BN) and K steps [split steps_per_split, + steps_per_split) of 64 kc
        elements each. x: bf16 [M, K]; w: NVFP4 bytes [N, KH] (KH = K / 2)."""
        i_p = gl.program_id(0)
        i_n = i_p // n_split
        i_s = i_p % n_split
        n_steps = gl.cdiv(KH // 8, 4 * KC)
        st_lo = i_s * steps_per_split
        st_hi = gl.minimum(n_steps, st_lo + steps_per_split)
        # packed weight, int32 words: row r, block j, word e -> r KH/4 + 2 j + e
        L_R: gl.constexpr = gl.SliceLayout(1, gl.SliceLayout(2, W_TILE))
        L_J: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(2, W_TILE))
        L_E: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(1, W_TILE))
        r = i_n * BN + gl.arange(0, BN, layout=L_R)
        j = gl.arange(0, 4 * KC, layout=L_J)
        e = gl.arange(0, 2, layout=L_E)
        r3 = gl.expand_dims(gl.expand_dims(r, 1), 2)
        j3 = gl.expand_dims(gl.expand_dims(j, 0), 2)
        e3 = gl.expand_dims(gl.expand_dims(e, 0), 1)
        kb0 = st_lo * (4 * KC)  # first block of this split
        o_w = r3.to(gl.int64) * (KH // 4) + (kb0 + j3) * 2 + e3
        # scales: [BN, 4 kc] in the slice of the weight tile
        r2 = gl.expand_dims(r, 1)
        j2 = gl.expand_dims(j, 0)
        blk = kb0 + j2
        p_sf = (sfw_ptr + (r2 >> 7) * (n_col_super * 512) + (r2 & 31) * 16 + ((r2 >> 5) & 3) * 4
                + (blk >> 2) * 512 + (blk & 3))
        # activation: bf16 pairs as int32 [BM, 4 kc, 8] (row m, block j, pair q -> m K/2 +
        # 8 j + q), or NVFP4 words [BM, 4 kc, 2] (m KH/4 + 2 j + q) and their scale bytes
        L_XM: gl.constexpr = gl.SliceLayout(1, gl.SliceLayout(2, X_TILE))
        L_XJ: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(2, X_TILE))
        L_XQ: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(1, X_TILE))
        m = gl.arange(0, BM, layout=L_XM)
        jx = gl.arange(0, 4 * KC, layout=L_XJ)
        m3 = gl.expand_dims(gl.expand_dims(m, 1), 2)
        jx3 = gl.expand_dims(gl.expand_dims(jx, 0), 2)
        m2 = gl.expand_dims(m, 1)
        jx2 = gl.expand_dims(jx, 0)
        if A_FP4:
            q3 = gl.expand_dims(gl.expand_dims(gl.arange(0, 2, layout=L_XQ), 0), 1)
            o_x = m3 * (KH // 4) + (kb0 + jx3) * 2 + q3
            blk_x = kb0 + jx2
            p_sfx = (sfx_ptr + (m2 >> 7) * (n_col_super * 512) + (m2 & 31) * 16
                     + ((m2 >> 5) & 3) * 4 + (blk_x >> 2) * 512 + (blk_x & 3))
        else:
            q3 = gl.expand_dims(gl.expand_dims(gl.arange(0, 8, layout=L_XQ), 0), 1)
            o_x = m3 * KH + (kb0 + jx3) * 8 + q3
            p_sfx = sfx_ptr
        n_blocks = KH // 8
        acc = gl.zeros([BN, BM], gl.float32, MMA)
        n_local = st_hi - st_lo
        if PREFETCH:  # a cache hint: the weight rows' slice, then the tile's scale chunks
            r_pf = i_n * BN + gl.arange(0, BN, layout=PF)  # a row per thread
            w_bytes = w_ptr.to(gl.pointer_type(gl.uint8), bitcast=True)
            one = gl.full([BN], 1, gl.int32, PF)
            _prefetch_l2(w_bytes + gl.minimum(r_pf, N - 1).to(gl.int64) * KH + kb0 * 8,
                         one * (n_local * (32 * KC)), (r_pf < N).to(gl.int32))
            # the scale chunks of the 128-row block holding the tile's first row: one
            # contiguous run (all the tile's scales for the rule's 64 / 128-row tiles; the
            # sweep's 256-row tile gets its first block's only, a hint either way)
            p_first = sfw_ptr + (i_n * BN >> 7) * (n_col_super * 512) + (kb0 >> 2) * 512
            _prefetch_l2(p_first + 0 * r_pf, one * (((n_local * 4 * KC + 3) >> 2) * 512),
                         (r_pf == i_n * BN).to(gl.int32))
        if PDL:  # the previous kernel's writes are visible after this; let the next launch
            gdc_wait()
            gdc_launch_dependents()
        if EVEN_K:
            m_w = r3 < N
            m_sf = r2 < N
            m_x = m3 < M
            m_sfx = m2 < M
            w, s, x, sx = _load_step(w_ptr, sfw_ptr, x_ptr, sfx_ptr, o_w, p_sf, o_x, p_sfx,
                                     m_w, m_sf, m_x, m_sfx, 0, not EVEN_N, A_FP4)
            if DEPTH == 1:
                for i in range(1, n_local):  # loads of step i issued before step i - 1's math
                    w1, s1, x1, sx1 = _load_step(w_ptr, sfw_ptr, x_ptr, sfx_ptr, o_w, p_sf, o_x,
                                                 p_sfx, m_w, m_sf, m_x, m_sfx, i, not EVEN_N,
                                                 A_FP4)
                    acc = _mma_step(w, s, x, sx, acc, A_OP, B_OP, A_FP4)
                    w, s, x, sx = w1, s1, x1, sx1
                acc = _mma_step(w, s, x, sx, acc, A_OP, B_OP, A_FP4)
            else:  # two steps in flight (a one-step split re-reads step 0, unused)
                w1, s1, x1, sx1 = _load_step(w_ptr, sfw_ptr, x_ptr, sfx_ptr, o_w, p_sf, o_x,
                                             p_sfx, m_w, m_sf, m_x, m_sfx,
                                             gl.minimum(n_local - 1, 1), not EVEN_N, A_FP4)
                for i in range(2, n_local):
                    w2, s2, x2, sx2 = _load_step(w_ptr, sfw_ptr, x_ptr, sfx_ptr, o_w, p_sf, o_x,
                                                 p_sfx, m_w, m_sf, m_x, m_sfx, i, not EVEN_N,
                                                 A_FP4)
                    acc = _mma_step(w, s, x, sx, acc, A_OP, B_OP, A_FP4)
                    w, s, x, sx = w1, s1, x1, sx1
                    w1, s1, x1, sx1 = w2, s2, x2, sx2
                acc = _mma_step(w, s, x, sx, acc, A_OP, B_OP, A_FP4)
                if n_local > 1:
                    acc = _mma_step(w1, s1, x1, sx1, acc, A_OP, B_OP, A_FP4)
        else:
            for i in range(0, n_local):
                kb = kb0 + i * (4 * KC)
                m_w = (r3 < N) & (kb + j3 < n_blocks)
                m_sf = (r2 < N) & (kb + j2 < n_blocks)
                m_x = (m3 < M) & (kb + jx3 < n_blocks)
                m_sfx = (m2 < M) & (kb + jx2 < n_blocks)
                w, s, x, sx = _load_step(w_ptr, sfw_ptr, x_ptr, sfx_ptr, o_w, p_sf, o_x, p_sfx,
                                         m_w, m_sf, m_x, m_sfx, i, True, A_FP4)
                acc = _mma_step(w, s, x, sx, acc, A_OP, B_OP, A_FP4)
        _finish(acc, i_n, i_s, n_split, M, N, out_scale * alpha, bias_ptr, out_ptr, ws_ptr,
                lock_ptr, HAS_BIAS, SPLIT, SUM_BATCH)

    @gluon.jit
    def _finish(acc, i_n, i_s, n_split, M, N, scale, bias_ptr, out_ptr, ws_ptr, lock_ptr,
                HAS_BIAS: gl.constexpr, SPLIT: gl.constexpr, SUM_BATCH: gl.constexpr):
        """out[m, n] = bf16(scale acc[n, m] (+ bias[n])) of row tile ``i_n``; with SPLIT the
        fp32 partial of split ``i_s`` goes to the workspace and the last split to arrive
        sums them in split order (deterministic) and resets the tile's counter."""
        MMA: gl.constexpr = acc.type.layout
        BN: gl.constexpr = acc.shape[0]
        BM: gl.constexpr = acc.shape[1]
        o_n = i_n * BN + gl.arange(0, BN, layout=gl.SliceLayout(1, MMA))
        o_m = gl.arange(0, BM, layout=gl.SliceLayout(0, MMA))
        n2 = gl.expand_dims(o_n, 1)
        m2 = gl.expand_dims(o_m, 0)
        if SPLIT:
            TILE: gl.constexpr = BN * BM
            o_t = gl.expand_dims(gl.arange(0, BN, layout=gl.SliceLayout(1, MMA)), 1) * BM + m2
            p_ws = ws_ptr + i_n.to(gl.int64) * n_split * TILE + o_t
            gl.store(p_ws + i_s * TILE, acc)
            gl.thread_barrier()
            last = gl.atomic_add(lock_ptr + i_n, 1, sem="acq_rel", scope="gpu") == n_split - 1
            if last:
                acc = gl.load(p_ws, cache_modifier=".cg")
                # fixed order; SUM_BATCH partials' loads in flight at once (one L2 round
                # trip per batch, not per split)
                for sp0 in range(1, n_split, SUM_BATCH):
                    for u in gl.static_range(SUM_BATCH):
                        live = sp0 + u < n_split
                        part = gl.load(p_ws + (sp0 + u) * TILE, mask=(o_t < TILE) & live,
                                       other=0.0, cache_modifier=".cg")
                        acc = gl.where(live, acc + part, acc)
                _store_out(acc, n2, m2, M, N, scale, bias_ptr, out_ptr, HAS_BIAS)
                gl.atomic_xchg(lock_ptr + i_n, 0, sem="relaxed", scope="gpu")
        else:
            _store_out(acc, n2, m2, M, N, scale, bias_ptr, out_ptr, HAS_BIAS)

    @gluon.jit
    def _store_out(acc, n2, m2, M, N, scale, bias_ptr, out_ptr, HAS_BIAS: gl.constexpr):
        y = acc * scale
        if HAS_BIAS:
            y += gl.load(bias_ptr + n2, mask=n2 < N, other=0.0).to(gl.float32)
        gl.store(out_ptr + m2.to(gl.int64) * N + n2, y.to(gl.bfloat16),
                 mask=(n2 < N) & (m2 < M))
