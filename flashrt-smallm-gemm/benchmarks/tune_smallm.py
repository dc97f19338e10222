"""Launch-configuration sweep of the small-M NVFP4 GEMMs (how the launch rule was chosen).

For each decode shape (K, N) and row count M, every variant is verified first
(against reference.py: the exact packed tensors dequantized, float64 sum; every
variant also runs twice and must agree bit for bit), then timed with the harness
(CUDA-graph replay over L2-rotated input sets: each call streams weights that are
not in L2, as the distinct weights of a model's layers are). Baselines side by
side: BF16 ``F.linear`` (alpha folded into the weight), ``torch._scaled_mm`` FP8
E4M3 (M padded to 16; timing only), the package's default launch, and at M = 1 a
device copy moving the weight bytes (the streaming limit).

Variants beside the default (the launch rule): launch options ``nopdl`` / ``pdl`` (PDL +
L2 prefetch on every call) / ``pdllate`` (dependents released after the K loop) /
``prefetchonly``; with ``--mma`` ``sum<b>`` (the mma kernel's split-K sum with b partials'
loads in flight) and ``steps<p>`` (the rule's tile with p K steps per program); for the
tl.dot kernel ``fp32decode`` and ``p6min1`` (up to 6 programs
per SM, one K step per split allowed). ``--tiles`` adds ``gemv4`` (the GEMV at 2-4 BF16
rows), ``gemv32x64`` / ``dot64x256`` (twice the K of a step) and re-runs the tile
sweep of earlier rounds, which chose the GEMV's 32 x 32 blocks, 4 warps, 4 programs
per SM and the dot kernel's 64-row / 4-warp tiles up to 32 rows, 128-row / 8-warp
tiles beyond (1.1-1.3x faster at M = 64). All measured on an NVIDIA H200.

Also measured there and dropped (same arithmetic and bits, only the load schedule
differed; times relative to the kernels kept): the GEMV loading its next step's
weight words and scales one step ahead (register double buffer): 0.98-1.09x at
M = 1 and 4; the tl.dot kernel's scale bytes loaded one step ahead: 0.98-1.15x at
M = 4-16, 0.98-0.99x at M = 64; its scales read as int32 words that Triton pipelines
with the packed tile: 1.09-1.43x. With either, Triton converts the dequantized tile
to the MMA operand layout through shared memory (2-byte stores) instead of
dequantizing it in that layout, which costs more than the scale-load stall removed.
In that run ``gemv4`` (37.9 / 18.6 / 68.5 / 49.5 µs at M = 4 vs 16.4 / 13.3 / 53.0 /
42.6) lost; ``gemv32x64`` (with the prefetch) was 1.19x faster at 1024 x 8192 (one
step covers K, no split) and 1.09-1.37x slower at the other shapes.

2026-12-02, two H200 runs (``results/nvidia-h200/tuning/flashrt-smallm-gemm/``; µs at
K x N = 1024x8192 / 4096x1024 / 2048x16384 / 16384x2048). The inline-PTX decode (bf16x2
bit moves) against ``fp32decode`` (the form it replaced, same config and bits): linear M =
4 14.1 / 11.6 / 50.0 / 40.0 against 15.1 / 12.3 / 52.6 / 41.4, 3-7% faster at M = 4-64
(one W4A4 row, M = 16 at 2048x16384, 54.1 against 45.5 in both runs: not understood).
Then 64-byte K steps (``dot64x64s<stages>p<programs per SM>``), linear M = 4: s3p2 12.7
/ 9.3 / 30.9 / 42.0, s3p4 12.6 / 12.1 / 34.3 / 32.0, s4p4 13.5 / 13.2 / 36.3 / 33.8;
M = 16 and the W4A4 matvec M = 16 alike; at M = 64 (128 x 64 tiles) 19.9 / 39.1 / 52.8 /
56.1 at best against 27.7 / 20.0 / 70.8 / 61.6. The rule adopted for M <= 32 (64-byte
steps, the most splits with <= 4 programs per SM and >= 2 steps per split) is, per shape,
the configuration of the best of these (p4 at 1024x8192 and 16384x2048, p2 at the other
two). ``dot32x128`` (32 weight rows per program) lost 2-3x. BF16 F.linear: 6.9 / 7.1 /
18.5 / 21.4 at M = 4.

Later that day (H200), the K order that gives each MMA operand thread whole NVFP4 blocks
and the 4-byte PTX decode (offline sm_90 build: 354 loop instructions per 64 x 64-byte step
against 575), scales still single bytes: linear M = 4 11.3 / 9.0 / 27.9 / 29.4 (the bench of
the earlier kernel that morning: 12.5 / 9.3 / 30.7 / 31.9), M = 10 11.7 / 9.1 / 28.1 / 29.1,
M = 16 11.9 / 9.0 / 27.9 / 29.0, W4A4 M = 16 11.1 / 9.1 / 28.1 / 29.3 (12.9 / 10.2 / 33.0 /
34.5), M = 64 27.1 / 19.7 / 66.7 / 58.1; ``fp32decode`` (same K order) 2-8% slower. 38% fewer
instructions for 3-17%: the kernel is latency-bound. Nsight Compute on it (M = 4, 1024x8192,
12.3 µs under the profiler): 0.36 eligible warps per scheduler, 0.25 issues per cycle, 49% of
the cycles between issues stalled on L1TEX scoreboards (the scale bytes were plain loads,
waited on in every step; the packed tile came through cp.async), DRAM 8%, L1 71% busy,
80 registers, 37.5% theoretical occupancy. cuBLAS BF16 on that shape (nvjet 64x8 tile,
168 registers): 7.6 µs, DRAM 46%. The next step, scale bytes read as int32 words of four
blocks (cp.async-pipelined with the tile), failed a GPU test in its first form (W4A4, M = 64
tile with 32-byte K steps; the interpreter passed) and was reverted before it was timed. The
cause, found offline afterwards: with the scale words Triton lays the PTX decode's operands
out with one int16 element per thread along K, so the 4-byte decode (which reads two
neighbouring elements per call) paired the wrong bytes. tests/ptx_operand_layout.py (run
by test_smallm.py) now checks that layout for every branch of the launch rule.
At M = 64, 64-byte steps (dot128x64s3p2) won at 1024x8192 (19.6 against 27.1), 2048x16384
and 16384x2048 (51.6-57.8 against 66.7, 52.2 against 58.1) but lost 2x at 4096x1024: no
rule change.

2026-12-02 afternoon (H200, ``tune_smallm.2026-12-02.pdl-always.json`` / ``.pdl.json``): the
PTX decode made element-wise (each output half from its own int16 element; K order with
byte bits 0 / 1 swapped, the same registers and instruction count), which makes int32
scale words correct in any layout: timed at last, 1.25-2.0x slower (the layout guard of
tests/ptx_operand_layout.py fails for them: Triton then sends the whole tile through
shared memory). Programmatic dependent launch with an L2 prefetch of the program's
weight slice: linear M = 4 15.0 / 8.2 / 38.0 / 39.6 µs with it on every call against
11.3 / 9.0 / 28.0 / 29.3 without (M = 16 and the W4A4 matvec alike; M = 1 GEMV 6.3 / 4.9
/ 17.7 / 17.8 against 6.4 / 5.5 / 15.0 / 14.9): it wins only where the grid has <= 2
programs per SM (4096 x 1024), the launch rule since (``PDL_MAX_PROGRAMS_PER_SM``).
Second run with that rule: linear M = 4 default 11.4 / 8.1 / 28.0 / 29.2, PDL released
after the K loop 13.4 / 10.4 / 32.8 / 34.4, prefetch without PDL 12.6 / 9.8 / 32.2 / 32.9,
``p6min1`` 11.6 / 11.7 / 31.2 / 34.0.
Third (``tune_smallm.2026-12-02.scalewords.json``): the weight's scale words spread to the
blocks by ``tl.gather`` (offline sm_90 build: the decode stays in the MMA operand layout,
the word loads are pipelined; a reshape, a split or per-group [rows, 1] loads all lost that
layout), the default since, against ``scalebytes``: linear M = 4 11.3 / 8.1 / 26.5 / 27.9
vs 11.3 / 8.1 / 28.0 / 29.2, W4A4 M = 16 11.3 / 7.7 / 26.9 / 27.6 vs 11.4 / 8.3 / 28.3 /
29.6, M = 64 26.4 / 18.9 / 63.4 / 56.5 vs 26.5 / 19.0 / 66.9 / 59.4. (The activation side of
the W4A4 matvec keeps bytes: Triton 3.6 asserts on that gather.)

2026-12-02 evening (H200): with one weight for every call (L2-hot, now recorded per row as
``default_l2_hot_us``) the default launch is 0-10% faster than over rotated weights (linear
M = 4 11.2 / 8.1 / 27.0 / 28.2 against 11.7 / 8.2 / 26.6 / 28.2 µs; M = 1 GEMV 5.9 / 4.5 /
14.4 / 13.5 against 6.1 / 4.9 / 15.0 / 15.0): the kernels are issue-bound, not bound by the
weight stream (``l2hot_smallm.2026-12-02.txt``). Warps per program (``--tiles``: ``w8``,
``w2``, ``bn128w8``; ``tune_smallm.2026-12-02.warps.json``), linear M = 4: 8 warps on the
rule's tile do not compile (TritonGPUOptimizeThreadLocality fails), 2 warps 15.3 / 10.3 /
42.4 / 44.7, 128 rows x 8 warps 14.0 / 7.8 / 32.8 / 33.7 against the rule's 11.7 / 8.1 /
26.6 / 28.1; M = 16 alike. No rule change.

2026-12-03 (H200, ``tune_smallm.2026-12-03.mma.json``; ``--mma``): the Gluon mma.sync kernel
(nvfp4_mma.py) over 13 tiles (``mma<rows>w<warps>r<row reps>kc<64-element chunks per
step>p<programs per SM>d<steps in flight>``) beside ``tldot`` (the tl.dot kernel's rule),
linear M = 4 / 10 / 16 and W4A4 M = 4 / 16. Linear M = 4: tldot 11.2 / 7.9 / 26.4 / 28.0,
best mma 6.0 / 5.9 / 11.9 / 12.4 (BF16 F.linear 6.8 / 7.7 / 18.4 / 21.3); M = 16: tldot
11.6 / 8.0 / 25.9 / 26.5, best mma 7.1 / 6.9 / 13.9 / 16.9. The rule (``tile_rule``) takes
the best tile per shape class. ``tune_smallm.2026-12-03.mma-first.json``: an earlier form
(16-bit loop-carried registers, fp32 scale decode), M = 4 best 5.9 / 6.1 / 13.2 / 13.5.

Later that day (H200, ``tune_smallm.2026-12-03.decode-probe.json``; probe code, not kept):
fewer instructions per K step on the rule's tiles, same bits (GPU suite passed on it).
The e2m1 decode with each byte moved to bits 8..15 of its half (low nibble from two shifted
copies, high nibble from one after a mask: 9 instructions per two bytes instead of 10,
checked against the kept decode on every int16 input), the scale pair from two integer
multiplies (8 instructions instead of 10), int32 scale registers, activation rows past M
clamped instead of masked: 259 loop instructions per step instead of 291 (offline sm_90
build, 64 x 64-element step). Names: ``default`` = all that, ``mmarollold`` = the same with
the kept decode, ``mmaunroll`` / ``mmaunrollalt`` = the K loop unrolled so that each step's
loads land in the registers they are used from (no loop-carried copies; rule depth / the
other depth), ``mmarollalt`` = the other depth. Linear M = 4: default 6.3 / 6.1 / 12.2 /
12.8, mmarollold 6.3 / 6.1 / 11.9 / 12.3, mmaunroll 7.1 / 6.4 / 12.7 / 13.9; M = 16 and
W4A4 M = 4 alike (default 0.97-1.07x of mmarollold, unrolled 1.03-1.13x slower). The
kernel is latency-bound, not issue-bound (``ncu_mma_m4.2026-12-03.txt``: 0.34-0.48 issued
warps per scheduler-cycle, 52-66% of cycles with no eligible warp, ~3-4 programs per SM).
Instruction count is not the lever.

Then (``tune_smallm.2026-12-03.burst-probe.json``; probe code, not kept) the loads of the
first 3 or 4 K steps issued at once (``burst<steps>kc<chunks>``, steps past a split load
zeros; with ``free`` the rule's splits, else splits of at most that many steps), on the
rule's warps and row reps: 1.0-1.8x slower on every shape (linear M = 4 best burst 6.5 /
6.7 / 12.7 / 13.2 against the rule's 6.3 / 6.0 / 11.8 / 12.3). In the sm_90 build ptxas
moves most of the burst's loads after the first step's MMA anyway (offline: 10-24 of 40
loads issued before it), and the shorter splits add programs and split-K work.

Then (``tune_smallm.2026-12-03.pdl.json``) the mma kernel with programmatic dependent
launch (``pdl``: + the L2 prefetch of the program's weight slice where smallm._prefetches
allows it; ``pdlnoprefetch``), linear M = 4 / 10 / 16 and W4A4 M = 4 / 16. Linear M = 4:
6.3 / 6.1 / 11.9 / 12.3 -> pdl 6.0 / 5.2 / 11.1 / 13.9, M = 16 7.1 / 6.9 / 13.9 / 16.9 ->
6.0 / 6.3 / 12.7 / 19.2; W4A4 M = 4 6.9 / 6.5 / 12.4 / 14.8 -> 7.0 / 5.4 / 13.0 / 17.2.
The prefetch adds 0-6%. Adopted where it won (``nvfp4_mma.uses_pdl_rule``: the linear at
K <= 4096, the matvec at N <= 2048 and K <= 4096).

Then (``tune_smallm.2026-12-03.ring-probe.json``, ``...ring-probe-first.json``; probe code,
commit b7b9411, not kept) the mma kernel fed by a TMA ring: one thread issues the TMA copies
of the weight tile [128 rows, 32 kc bytes] (swizzled to its width) and the step's scale
chunks 3-8 steps ahead into shared memory (an mbarrier per slot); the warps read their
operand registers from the slot in the mma kernel's layouts (same bits as nvfp4_mma on every
shape checked, ragged N and K included). Ten (warps, kc, stages, programs per SM, min steps)
tiles, linear M = 4 / 10 / 16: best ring 6.9 / 6.6 / 12.1 / 13.1 at M = 4 against the rule's
5.9 / 4.8 / 11.3 / 12.1, 0.73-1.02x on every row (the one 1.02: M = 16 16384x2048, 16.8 vs
17.1). The rule's kernel timed with every weight L2-resident (``default_l2_hot_us``) is only
3-10% faster than with weights streamed from DRAM (2048x16384 M = 4 10.3 vs 11.2, 16384x2048
M = 16 16.9 vs 16.9): bytes in flight are not what bounds it, so more of them do not help;
the ring's per-step CTA barriers (4 bar.sync and a proxy fence per step in the sm_90 build)
cost more. The same runs (``sum<b>``, ``tune_smallm.2026-12-03.sum-batch.json``) chose the
split-K sum with 8 partials' loads in flight (``nvfp4_mma.SUM_BATCH``): 5-13% faster where
the rule splits K 24-32 ways (4096x1024, 16384x2048), within 2% elsewhere; 16 is slower at
2048x16384.

Then (``tune_smallm.2026-12-03.steps.json``) ``steps<p>``: the rule's tile with p K steps
per program, linear M = 4 / 16. At 2048x16384 M = 4: p = 32 / 16 / 8 / 4 (128 / 256 / 512 /
1024 programs) 19.2 / 14.0 / 11.2 / 13.3 µs; the rule's p was the best on every shape but
1024x8192 M = 4 (p = 2: 5.0 against the rule's 3: 5.8) and 4096x1024 M = 16 (p = 4: 5.7
against 2: 6.1, not adopted: within the run-to-run spread of 10- and 16-row rows). The
8-row wide-short tile class now keeps ~3.5 programs per SM (``tile_rule``);
``tune_smallm.2026-12-03.steps-rule.json`` checks it: 1024x8192 5.1 (linear M = 4), 6.4
(W4A4 M = 4), 5.3 (M = 8); 2048x16384 unchanged (11.2 / 12.7 / 11.4).

Run on a GPU: ``python3 flashrt-smallm-gemm/benchmarks/tune_smallm.py --out DIR``
(``--budget S`` stops timing new rows after S seconds; JSON is written after each row).
"""

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench.harness import (graph_us, rotation_sets, same_bits,  # noqa: E402
                                         same_size_copy_us)
from flashrt_tools.repo import ROOT, Package, load_file  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built, reference_of  # noqa: E402

cases = load_file(ROOT / "flashrt-smallm-gemm" / "tests" / "cases.py",
                  "_flashrt_cases_flashrt_smallm_gemm")

SHAPES = ((1024, 8192), (4096, 1024), (2048, 16384), (16384, 2048))
# (op, M) rows in the order they decide something; --budget cuts the tail
JOBS = (("linear", 1), ("linear", 16), ("linear", 4), ("matvec", 1), ("linear", 64),
        ("matvec", 4), ("matvec", 16))
ALPHA = 0.5
# --tiles: gemv (BLOCK_N, BLOCK_B, warps, programs per SM); dot (BLOCK_N, BLOCK_KH, warps,
# stages, programs per SM)
GEMV = ((32, 32, 4, 4), (64, 32, 4, 4), (32, 64, 4, 4), (32, 32, 4, 8), (16, 32, 2, 8))
DOT = ((64, 128, 4, 3, 2), (128, 128, 8, 3, 2), (64, 256, 4, 3, 2), (64, 128, 4, 3, 4))
# --mma: the Gluon kernel's
# (warps, row reps, 64-element chunks per K step, programs per SM, steps of loads in flight)
MMA = ((4, 2, 1, 3, 2), (4, 2, 1, 3, 1), (4, 2, 1, 4, 2), (4, 2, 1, 6, 2), (4, 1, 1, 6, 2),
       (8, 1, 1, 3, 2), (8, 2, 1, 2, 2), (4, 2, 2, 3, 1), (4, 2, 2, 3, 2), (4, 1, 2, 4, 1),
       (8, 1, 2, 2, 1), (2, 2, 1, 8, 2), (4, 4, 1, 2, 2))


def variants(sm, M, N, K, dev, a_fp4, tiles, mma=False):
    """(name, config, launch options) triples timed beside the default launch (config
    None: the launch rule; options: ``_launch_gemm``'s pdl / prefetch / early_release,
    unset: the rule's)."""
    out = [("nopdl", None, {"pdl": False, "prefetch": False}),
           ("pdl", None, {"pdl": True, "prefetch": True}),
           ("pdlnoprefetch", None, {"pdl": True, "prefetch": False}),
           ("pdllate", None, {"pdl": True, "prefetch": True, "early_release": False}),
           ("prefetchonly", None, {"pdl": False, "prefetch": True})]
    rule = sm.gemm_config(M, N, K // 2, dev, a_fp4)
    if mma and rule[0] == "mma":
        # its split-K sum with b partials' loads in flight, and its tile with p K steps per
        # program (time against steps per program)
        out += [("sum%d" % b, None, {"sum_batch": b}) for b in (1, 4, 8, 16)]
        steps = sm.cdiv(K // 16, 4 * rule[3])
        out += [("steps%d" % p, rule[:4] + (sm.cdiv(steps, p), p) + rule[6:], {})
                for p in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64) if p <= steps]
    dot_rows = M > (sm.W4A4_GEMV_MAX_ROWS if a_fp4 else sm.GEMV_MAX_ROWS)
    if dot_rows:
        cfg = sm.dot_config(M, N, K // 16, dev)  # the tl.dot kernel's rule
        # the decode the inline-PTX one replaced (the interpreter's form)
        out.append(("fp32decode", cfg[:8] + ("fp32",) + cfg[9:], {}))
        other = "words" if cfg[9] == "bytes" else "bytes"
        out.append(("scale" + other, cfg[:9] + (other,), {}))
        if M <= 32:  # more, shorter programs (one K step per split allowed)
            out.append(("p6min1", sm.dot_config(M, N, K // 16, dev, max_waves=6, min_steps=1),
                        {}))
    if tiles and not a_fp4:
        if 2 <= M <= 4:
            out.append(("gemv4", sm.gemv_config(4, N, K // 16, dev), {}))
        if M == 1:  # twice the blocks per step
            out.append(("gemv32x64", sm.gemv_config(1, N, K // 16, dev, 32, 64), {}))
        if M == 16:  # twice the K per step (fewer pipeline steps)
            out.append(("dot64x256", sm.dot_config(M, N, K // 16, dev, 64, 256), {}))
        out += [("gemv%dx%dw%dp%d" % g, sm.gemv_config(1 if M == 1 else max(M, 4), N, K // 16,
                                                       dev, *g), {}) for g in GEMV if M <= 4]
        out += [("dot%dx%dw%ds%dp%d" % d, sm.dot_config(M, N, K // 16, dev, *d), {})
                for d in DOT if M >= 2]
    if mma and 2 <= M <= 16:  # the Gluon mma.sync kernel (nvfp4_mma.py), and the tl.dot one
        nm = importlib.import_module(sm.__name__.rsplit(".", 1)[0] + ".nvfp4_mma")
        out.append(("tldot", sm.dot_config(M, N, K // 16, dev), {}))
        out += [("mma%dw%dr%dkc%dp%dd%d" % ((16 * w * r, w, r, kc, p, d)),
                 nm.mma_config(M, N, K // 2, dev, w, r, kc, p, depth=d), {})
                for w, r, kc, p, d in MMA]
    if tiles and dot_rows:  # warps per program on the rule's tile, and 128 rows x 8 warps
        out += [("w8", cfg[:6] + (8,) + cfg[7:], {}), ("w2", cfg[:6] + (2,) + cfg[7:], {}),
                ("bn128w8", sm.dot_config(M, N, K // 16, dev, block_n=128, warps=8), {})]
    return out


def fp4_sets(M, N, K, dev, n, a_fp4):
    sets = []
    nbytes = -(-N // 128) * -(-(K // 16) // 4) * 512
    for i in range(n):
        g = torch.Generator(device=dev).manual_seed(i)
        w = torch.randint(0, 256, (N, K // 2), generator=g, device=dev, dtype=torch.uint8)
        s = torch.randint(0x30, 0x40, (nbytes,), generator=g, device=dev, dtype=torch.uint8)
        if a_fp4:
            a = torch.randint(0, 256, (M, K // 2), generator=g, device=dev, dtype=torch.uint8)
            sa = torch.randint(0x30, 0x40, (-(-M // 128) * -(-(K // 16) // 4) * 512,),
                               generator=g, device=dev, dtype=torch.uint8)
        else:
            a = torch.randn(M, K, generator=g, device=dev).to(torch.bfloat16)
            sa = None
        sets.append((a, sa, w, s, torch.empty(M, N, dtype=torch.bfloat16, device=dev)))
    return sets


def run_row(sm, ref, M, K, N, a_fp4, dev, tiles=False, only=(), mma=False):
    wbytes = N * K // 2 + N * K // 16
    sets = fp4_sets(M, N, K, dev, rotation_sets(wbytes), a_fp4)
    a, sa, w, s, _ = sets[0]
    if a_fp4:
        want = ref.nvfp4_w4a4_decode_matvec_bf16out(a, w, sa, s, alpha=ALPHA).reshape(M, N)
        tol = cases.gemm_tolerance(K, ALPHA, cases.E2M1_MEAN_SQ * cases.SCALE_MEAN_SQ)["gemm"]
    else:
        want = ref.nvfp4_weight_only_linear_bf16(a, w, s, alpha=ALPHA)
        tol = cases.gemm_tolerance(K, ALPHA, 1.0)["gemm"]
    row = {"op": "matvec" if a_fp4 else "linear", "M": M, "K": K, "N": N,
           "weight_bytes": wbytes, "variants": {}}

    def call(cfg, options):
        return lambda t: sm._launch_gemm(t[0], t[1], t[2], t[3], None, t[4], M, ALPHA, a_fp4,
                                         cfg, **options)

    todo = [("default", None, {})] + [v for v in variants(sm, M, N, K, dev, a_fp4, tiles, mma)
                                      if not only or v[0] in only
                                      or ("mma*" in only and v[0].startswith("mma"))]
    for name, cfg, options in todo:
        fn = call(cfg, options)
        try:
            fn(sets[0])
            got = sets[0][4].clone()
            fn(sets[0])
            same = same_bits(got, sets[0][4])
            v = compare("gemm", got, want, **tol)
            if not (v.ok and same):
                row["variants"][name] = {"cfg": cfg, "error": f"verify: {v.message} same={same}"}
                continue
            us = graph_us(fn, sets)
        except Exception as e:  # a variant that fails to compile is reported, not fatal
            row["variants"][name] = {"cfg": cfg, "error": f"{type(e).__name__}: {str(e)[:160]}"}
            continue
        row["variants"][name] = {"cfg": cfg, "us": us,
                                 "weight_tbps": wbytes / us / 1e6}
        if name == "default":  # one weight for every call: L2-hot (is the stream the bound?)
            row["default_l2_hot_us"] = graph_us(fn, sets[:1])
    del sets
    if not a_fp4:
        row.update(baselines(M, N, K, dev))
    if M == 1 and not a_fp4:  # the limit: a device copy moving the weight bytes (read + written)
        row["copy_us"] = same_size_copy_us(wbytes, rotation_sets(wbytes))
    torch.cuda.empty_cache()
    return row


def baselines(M, N, K, dev):
    res = {}
    n = rotation_sets(2 * N * K)
    wb = [torch.randn(N, K, device=dev).to(torch.bfloat16) for _ in range(n)]
    x = torch.randn(M, K, device=dev).to(torch.bfloat16)
    # alpha folded into the BF16 weight: one cuBLAS call, no extra scaling kernel
    res["bf16_linear_us"] = graph_us(lambda i: F.linear(x, wb[i]), list(range(n)))
    try:
        n = rotation_sets(N * K)
        w8 = [torch.randn(N, K, device=dev).to(torch.float8_e4m3fn) for _ in range(n)]
        x8 = torch.randn(max(16, -(-M // 16) * 16), K, device=dev).to(torch.float8_e4m3fn)
        one = torch.ones((), device=dev)
        res["fp8_scaled_mm_us"] = graph_us(
            lambda i: torch._scaled_mm(x8, w8[i].t(), scale_a=one, scale_b=one,
                                       out_dtype=torch.bfloat16), list(range(n)))
    except Exception as e:
        res["fp8_scaled_mm_us"] = None
        res["fp8_note"] = str(e)[:100]
    return res


def summary(row):
    """One line: each variant's µs (ERR when it failed verification), the baselines and
    the default's speedup over BF16 F.linear."""
    line = f"{row['op']:6s} M={row['M']:<2d} {row['K']:>5d}x{row['N']:<5d}"
    for name, v in row["variants"].items():
        line += f" {name} {v['us']:.1f}" if "us" in v else f" {name} ERR"
    if row.get("copy_us"):
        line += f" | copy {row['copy_us']:.1f}"
    if row.get("bf16_linear_us"):
        line += f" | bf16 {row['bf16_linear_us']:.1f} fp8 {row.get('fp8_scaled_mm_us') or 0:.1f}"
        if "us" in row["variants"].get("default", {}):
            line += f" x{row['bf16_linear_us'] / row['variants']['default']['us']:.2f}"
    return line


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--budget", type=float, default=70.0)
    p.add_argument("--shapes", default="all", help="KxN list, e.g. 1024x8192,4096x1024")
    p.add_argument("--jobs", default="", help="op:M list, e.g. linear:1,matvec:4 (default JOBS)")
    p.add_argument("--tiles", action="store_true", help="also sweep the GEMV / dot tile shapes")
    p.add_argument("--mma", action="store_true", help="also time the Gluon mma.sync kernel")
    p.add_argument("--variants", default="", help="only these variant names (comma list; "
                                                  "mma* = every mma one; the default launch "
                                                  "always runs)")
    args = p.parse_args()
    t0 = time.time()
    dev = torch.device("cuda")
    kernel = load_built(Package("flashrt-smallm-gemm"))
    sm = importlib.import_module(f"{kernel.__name__}.smallm")
    ref = reference_of(kernel)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shapes = SHAPES if args.shapes == "all" else [tuple(map(int, s.split("x")))
                                                  for s in args.shapes.split(",")]
    jobs = JOBS if not args.jobs else [(j.split(":")[0], int(j.split(":")[1]))
                                       for j in args.jobs.split(",")]
    only = set(filter(None, args.variants.split(",")))
    rows, skipped = [], []
    for op, M in jobs:
        for K, N in shapes:
            if time.time() - t0 > args.budget:
                skipped.append(f"{op}:{M}:{K}x{N}")
                continue
            row = run_row(sm, ref, M, K, N, op == "matvec", dev, args.tiles, only, args.mma)
            rows.append(row)
            print(summary(row), flush=True)
            (out / "tune_smallm.json").write_text(json.dumps(
                {"gpu": torch.cuda.get_device_name(0), "rows": rows}, indent=1, default=str))
    for name, v in ((n, v) for r in rows for n, v in r["variants"].items() if "error" in v):
        print(f"ERR {name}: {v['error'][:150]}")
    print(f"done in {time.time() - t0:.0f}s; budget skipped {len(skipped)} rows: "
          f"{' '.join(skipped)[:300]}")


if __name__ == "__main__":
    main()
