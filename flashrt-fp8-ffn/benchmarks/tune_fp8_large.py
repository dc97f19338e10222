"""Large-M (M >= 256) FP8 GEMM sweep: kernel form, tile shape and accumulation interval.

Candidates are launches of ``fp8_gemm.launch_with_config`` with a configuration tuple:
the package rule (``gemm_config``), the pointer tile kernel (``"tile"``) or the persistent
TMA kernel (``"tma"``: one program per SM walking the output tiles, A and W tiles
loaded through tensor descriptors), each with an accumulation interval ``imprecise``
(products summed in the tensor core before promotion to the fp32 accumulator: 32 = every
wgmma step, 128 = once per 128-wide K block, ``fast`` = never, Triton's sm_90 default,
timed for information only).

Each row: every candidate's output is compared with an fp64 reference of the same FP8
operands (relative L2 error, the share of outputs that differ from the correctly rounded
bf16 value, the largest error over the reference's RMS), beside ``torch._scaled_mm`` (and its
``use_fast_accum=True`` form); then timed under CUDA-graph replay over L2-rotated operand
sets. Gated rows (a merged gate/up weight) also check that the fused gated call's gate
and up columns equal the staged GEMM's bit for bit under the same configuration.

Measured on H200 (graph replay, 2026-12-02, two runs; us, the package rule (paired loop
on non-gated rows) against the tile kernel it replaced and torch._scaled_mm): 8192^3
1202 / 1664 / 891; PI0.5 decoder M = 512 up 8.65 / 10.31 / 7.44, down 11.59 / 27.14 /
7.86; M = 1024 up 13.80 / 18.79 / 11.37, down 13.78 / 27.41 / 10.36; SigLIP M = 512 up
13.90 / 19.27 / 7.99, down 15.57 / 35.04 / 11.62; encoder down (560, 16384 -> 2048)
61.98 / 97.93 / 34.97; gated gate/up epilogue, encoder (560, 2048 -> 2 x 16384) 107.1 /
187.1 (promoted loop). The gain is the
128-wide interval (old tile rule at 128: 1296 at 8192^3) plus the tile choice (down
projections: 64 x 64 / 64 x 128 tiles fill the SMs); TMA over pointer loads on the same
tile 0-15% (the pointer kernel is faster on a few rows: dec down M = 512 10.4 against
11.3); the paired loop 3-15% on non-gated rows. Never promoting (Triton's default,
``tma_fast`` in the first run: 922 at 8192^3) is less accurate than _scaled_mm (37% of
outputs off the correctly rounded bf16 against 6.8%). Every variant at 128 gave the same
bits as the promoted TMA loop on the same tile. Not reached: _scaled_mm speed, what is
left is Triton's promotion (the wgmma pipeline drains before every block's additions;
CUTLASS overlaps them across two consumer warp groups) and no split-K for long-K rows.

Split-K over the TMA kernel (``splitk*``, down projections; third H200 run, 2026-12-02;
us, best split against the rule and _scaled_mm): dec down M = 256 9.48 (64x64 x2) / 11.13 /
7.20, SigLIP down M = 256 11.28 (64x128 x3) / 12.86 / 7.95, encoder down 63.56 (128x128 x3)
/ 68.52 / 33.33; from M = 512 every split is slower than the rule (dec down M = 512 12.16
against 11.70; M = 4096 62 against 37). Below TMA_MIN_M it wins more (dec down M = 128
7.31 against the pointer tile rule's 10.63, SigLIP down 8.73 against 15.29), but at the
128-wide interval, which that range does not promise. Not adopted: 7-15% on three rows
would need a split-K form of the gated kernel too (fused == staged on any shape the rule
splits) and a second accumulation contract for M < 256.

Run: python3 flashrt-fp8-ffn/benchmarks/tune_fp8_large.py --out DIR [--budget S]
     [--shapes M,K,N ...] [--cands NAME ...]
Writes DIR/tune_fp8_large.json; prints one line per candidate and row.
"""

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench.fp8_ffn import BF16, FP8, gemm_operand_sets  # noqa: E402
from flashrt_tools.bench.harness import graph_us, rotation_sets  # noqa: E402
from flashrt_tools.repo import Package  # noqa: E402
from flashrt_tools.tolerance import error_vs_fp64, fp8_product_fp64  # noqa: E402
from flashrt_tools.validation import load_built  # noqa: E402

START = time.time()

# --- candidate not in the package: split-K over the persistent TMA kernel -----------------
# For down projections (N ~ 1024-2048, long K), whose tiles do not fill the SMs in one
# wave. Work item = (tile, K split): each split stores its fp32 partial (paired K loop,
# the package's numerics per split), the last to arrive sums the partials in split order
# and runs the package epilogue (deterministic, one launch). Different bits from the
# unsplit kernel (the sum order changes), so a rule adopting it must also give the gated
# kernel of that shape the same split. Names bound from the loaded package by main().
_epilogue = _epilogue_operands = grouped_tile = split_k_arrive = split_k_release = None


@triton.jit(do_not_specialize=["M", "programs"])
def _tma_split_k_kernel(a_desc, w_desc, sa_ptr, sw_ptr, bias_ptr, so_ptr, c_ptr, q_ptr, ws_ptr,
                        lock_ptr, M, N, K, ldc, k_per_split, programs,
                        EPI: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, SPLIT: tl.constexpr):
    n_tiles = tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N)
    TILE: tl.constexpr = BLOCK_M * BLOCK_N
    o_t = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    for item in tl.range(tl.program_id(0), n_tiles * SPLIT, programs, flatten=True):
        t = item // SPLIT
        i_s = item % SPLIT
        i_m, i_n = grouped_tile(t, M, N, BLOCK_M, BLOCK_N, GROUP_M)
        m0 = i_m * BLOCK_M
        n0 = i_n * BLOCK_N
        k0 = i_s * k_per_split
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(k0, tl.minimum(k0 + k_per_split, K), 2 * BLOCK_K):
            t0 = tl.dot(a_desc.load([m0, k]), w_desc.load([n0, k]).T)
            t1 = tl.dot(a_desc.load([m0, k + BLOCK_K]), w_desc.load([n0, k + BLOCK_K]).T)
            acc += t0
            acc += t1
        p_ws = ws_ptr + t.to(tl.int64) * (SPLIT * TILE) + o_t
        if split_k_arrive(p_ws, acc, i_s, lock_ptr + t, SPLIT, TILE):
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for j in tl.static_range(SPLIT):
                acc += tl.load(p_ws + j * TILE, cache_modifier=".cg")
            o_m = m0 + tl.arange(0, BLOCK_M)
            o_n = n0 + tl.arange(0, BLOCK_N)
            s, b, inv = _epilogue_operands(sa_ptr, sw_ptr, bias_ptr, so_ptr, o_n[None, :], N,
                                           EPI, False)
            _epilogue(acc, acc, s, b, inv, o_m[:, None], o_n[None, :], M, N, ldc, c_ptr,
                      q_ptr, EPI, False, 0)
            split_k_release(lock_ptr + t)


def split_k_call(gemm, bm, bn, warps, stages, split):
    """fp8_gemm_bf16 through ``_tma_split_k_kernel`` (K split into ``split`` ranges that
    are multiples of two 128-wide blocks), as a sweep call on a set (x, w, sx, sw, out)."""
    def call(s):
        x, w, sx, sw, out = s
        M, K = x.shape
        N = w.shape[0]
        tiles = gemm.cdiv(M, bm) * gemm.cdiv(N, bn)
        k_per_split = gemm.cdiv(gemm.cdiv(K, split), 256) * 256
        n_split = gemm.cdiv(K, k_per_split)
        ws = torch.empty(tiles * n_split * bm * bn, dtype=torch.float32, device=x.device)
        locks = gemm._SPLIT_LOCKS.get(x.device, tiles)
        programs = min(tiles * n_split, gemm._sm_count(x.device))
        _tma_split_k_kernel[(programs,)](
            TensorDescriptor.from_tensor(x, [bm, 128]), TensorDescriptor.from_tensor(w, [bn, 128]),
            sx, sw, sx, sx, out, out, ws, locks, M, N, K, out.shape[1], k_per_split, programs,
            EPI=gemm.EPI_NONE, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=128, GROUP_M=8, SPLIT=n_split,
            num_warps=warps, num_stages=stages)
        return out
    return call


def _tma(gemm, M, N, sms, **change):
    """The TMA configuration of ``tma_tile`` (whatever M), fields replaced by ``change``
    (``paired``: stages of the paired K loop, 0 = the promoted loop)."""
    bm, bn, bk, group, warps, stages, paired = gemm.tma_tile(M, N, sms)
    c = dict(bm=bm, bn=bn, warps=warps, stages=stages, paired=paired)
    c.update(change)
    return ("tma", c["bm"], c["bn"], bk, group, c["warps"], c["stages"], c["paired"])


# name -> (config from (gemm module, M, N, K, sms), imprecise); "rule" is the package's.
# Dropped after the first H200 run (2026-12-02; numbers in the docstring): warp
# specialization of the tile loop (no effect on sm_90 with Triton 3.6), 128 x 256 and
# 128 x 64 tiles, a 64-wide interval.
CANDIDATES = {
    "rule": (lambda g, M, N, K, sms: g.gemm_config(M, N, K, torch.device("cuda")), None),
    # the pointer tile rule, which the TMA kernel replaced from 256 rows
    "old_rule_i32": (lambda g, M, N, K, sms: g.tile_config(M, N, sms), 32),
    "old_rule_i128": (lambda g, M, N, K, sms: g.tile_config(M, N, sms), 128),
    "tma_rule": (lambda g, M, N, K, sms: _tma(g, M, N, sms, paired=0), 128),
    "ptr_same_tile": (lambda g, M, N, K, sms: ("tile",) + _tma(g, M, N, sms)[1:7], 128),
    "tma_s3": (lambda g, M, N, K, sms: _tma(g, M, N, sms, stages=3, paired=0), 128),
    "paired_s2": (lambda g, M, N, K, sms: _tma(g, M, N, sms, paired=2), 128),
    "paired_s3": (lambda g, M, N, K, sms: _tma(g, M, N, sms, paired=3), 128),
    "paired128_s3": (lambda g, M, N, K, sms: _tma(g, M, N, sms, bm=128, bn=128, warps=8,
                                                   paired=3), 128),
}


# name -> (BLOCK_M, BLOCK_N, warps, stages, K splits) of split_k_call: down projections only
SPLIT_CANDIDATES = {f"splitk{bm}x{bn}_x{sp}": (bm, bn, 8 if bm == 128 else 4, 3, sp)
                    for bm, bn in ((128, 128), (64, 128), (64, 64)) for sp in (2, 3, 4)}

# (label, M, K, N, gated): PI0.5 decoder / SigLIP / encoder GeGLU GEMMs, 8192^3
SHAPES = [("square", 8192, 8192, 8192, False)]
for _m in (128, 256, 512, 1024, 4096):
    SHAPES += [("dec_up", _m, 1024, 4096, False), ("dec_down", _m, 4096, 1024, False),
               ("dec_gate_up", _m, 1024, 8192, True)]
for _m in (128, 256, 512, 768):
    SHAPES += [("siglip_up", _m, 1152, 4304, False), ("siglip_down", _m, 4304, 1152, False)]
SHAPES += [("enc_gate_up", 560, 2048, 32768, True), ("enc_down", 560, 16384, 2048, False),
           ("enc_gate_up", 4096, 2048, 32768, True)]


def accuracy(out, ref64):
    rel_l2, not_rounded = error_vs_fp64(out, ref64)
    return {"rel_l2": rel_l2, "not_rounded": not_rounded,
            "max_err_over_rms": ((out.double() - ref64).abs().max()
                                 / ref64.pow(2).mean().sqrt()).item()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=300.0)
    ap.add_argument("--shapes", nargs="*", help="M,K,N substrings of rows to run")
    ap.add_argument("--cands", nargs="*", help="candidate names (default: all)")
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    kernel = load_built(Package("flashrt-fp8-ffn"))
    gemm = importlib.import_module(kernel.__name__ + ".fp8_gemm")
    helpers = importlib.import_module(kernel.__name__ + "._helpers")
    globals().update(_epilogue=gemm._epilogue, _epilogue_operands=gemm._epilogue_operands,
                     grouped_tile=helpers.grouped_tile, split_k_arrive=helpers.split_k_arrive,
                     split_k_release=helpers.split_k_release)
    cands = {n: CANDIDATES[n] for n in (args.cands or CANDIDATES) if n in CANDIDATES}
    split_cands = {n: SPLIT_CANDIDATES[n] for n in (args.cands or SPLIT_CANDIDATES)
                   if n in SPLIT_CANDIDATES}
    rows = []
    print(f"GPU {torch.cuda.get_device_name()}", flush=True)
    for label, M, K, N, gated in SHAPES:
        tag = f"{M},{K},{N}"
        if args.shapes and not any(s in tag for s in args.shapes):
            continue
        if time.time() - START > args.budget:
            print(f"budget: skip {label} {tag}", flush=True)
            continue
        sets = gemm_operand_sets(M, K, N, min(rotation_sets(M * K + N * K + 2 * M * N), 8))
        x, w, sx, sw, _ = sets[0]
        ref64 = fp8_product_fp64(x, w, sx, sw)
        flops = 2 * M * N * K

        def record(name, fn, extra=None, out=None):
            out = fn(sets[0]) if out is None else out
            acc = accuracy(out, ref64)
            us = graph_us(fn, sets)
            row = {"shape": f"M={M},K={K},N={N}", "model": label, "cand": name, "us": us,
                   "tflops": flops / us / 1e6, **acc, **(extra or {})}
            rows.append(row)
            print(f"{label:12s} {tag:16s} {name:20s} {us:9.2f} us {row['tflops']:7.1f} TF/s "
                  f"relL2 {acc['rel_l2']:.2e} off {acc['not_rounded']:.4f} "
                  f"{ {k: v for k, v in (extra or {}).items() if k != 'cfg'} }", flush=True)

        def failed(name, e):
            print(f"{label:12s} {tag:16s} {name:20s} FAILED {type(e).__name__}: "
                  f"{str(e).splitlines()[0][:160] if str(e) else ''}", flush=True)
            rows.append({"shape": f"M={M},K={K},N={N}", "model": label, "cand": name,
                         "error": f"{type(e).__name__}: {str(e)[:300]}"})

        for fast in (False, True):
            record("scaled_mm" + ("_fast" if fast else ""),
                   lambda s, fast=fast: torch._scaled_mm(s[0], s[1].t(), scale_a=s[2],
                                                         scale_b=s[3], out_dtype=BF16,
                                                         use_fast_accum=fast))
        sms = torch.cuda.get_device_properties(0).multi_processor_count
        outs = {}
        for name, (make, imp) in cands.items():
            c = make(gemm, M, N, K, sms)
            if gated and name.startswith("paired"):
                continue  # the paired loop has no gated form

            def call(s, c=c, imp=imp):
                gemm.launch_with_config(c, False, s[0], s[1], s[2], s[3], s[4], imprecise=imp)
                return s[4]
            try:
                extra = None
                if gated:  # fused gated epilogue vs the staged GEMM, same config
                    H = N // 2
                    g_out = torch.empty(M, N, dtype=BF16, device="cuda")
                    q = torch.empty(M, H, dtype=FP8, device="cuda")
                    so = torch.tensor([0.05], device="cuda")
                    gemm.launch_with_config(c, False, x, w, sx, sw, g_out, so=so, q=q, act=1,
                                            imprecise=imp)
                first = call(sets[0]).clone()
                if gated:
                    extra = {"fused_eq_staged": bool(torch.equal(g_out, first))}
                    extra["gated_us"] = graph_us(
                        lambda s, c=c, imp=imp: gemm.launch_with_config(
                            c, False, s[0], s[1], s[2], s[3], g_out, so=so, q=q, act=1,
                            imprecise=imp), sets)
                extra = dict(extra or {}, cfg=list(c))
                ref_name = "tma_rule" if name.startswith(("paired", "ptr")) else None
                if ref_name in outs:
                    extra["bits_eq_tma_rule"] = bool(torch.equal(first, outs[ref_name]))
                record(name, call, extra, out=first)
                outs[name] = first
            except Exception as e:  # a config that fails to compile or launch: say so
                failed(name, e)
        for name, spec in (split_cands.items() if not gated and N <= 2048 else ()):
            try:
                record(name, split_k_call(gemm, *spec), {"cfg": ["splitk", *spec]})
            except Exception as e:
                failed(name, e)
        sets = ref64 = None  # free before the next row
        torch.cuda.empty_cache()
        (out_dir / "tune_fp8_large.json").write_text(json.dumps(
            {"gpu": torch.cuda.get_device_name(), "rows": rows}, indent=1))
    print(f"done in {time.time() - START:.0f} s", flush=True)


if __name__ == "__main__":
    main()
