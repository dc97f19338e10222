"""How the KV-cache RoPE writer's design and launch rule were chosen.

``qkv_split_rope_kvcache_bf16`` on the PI0.5 shapes (8 q / 1 kv heads x 256,
encoder prefill S = 560, decoder S = 10 at cache offset 560, 1024-row cache):

* ``pairs_strided``: the earlier kernel (kept here as the record): each pair
  read as two stride-2 element loads, stored the same way;
* ``split``: the package kernel: whole head vectors and table rows loaded
  contiguously and split into (even, odd) pairs in registers, swept over
  BLOCK_V x num_warps; ``rule`` = the package's launch rule (``vector_config``);
* baselines: eager reference math writing the same cache rows in place,
  torch.compile of it (verified against eager first), a same-size device copy.

``--wan`` sweeps the whole-hidden (Wan) kernel's launch settings around
``row_config`` (``wan_candidates``: warps, early table loads, and the exact-chunk
split with its three hold modes) for ``qkv_split_norm_rope_bf16`` and
``qkv_split_bias_norm_rope_v_bf16`` at T = 2520 and 4096, 24 and 40 heads.

``--joint3`` times ``qkv_split_joint3_cat_bf16`` (L = 2520 / 16 / 16, 24 heads) with one
launch per segment against the three segments in one launch
(``norm_rope.JOINT3_ONE_LAUNCH``), at the rule's tiles and every ``wan_candidates``
setting. H200, 2026-12-04: one launch 28.70 us, per segment 32.48 (the two short
16-row launches were most of the gap to the cat writer, 27.20 us in the 2026-12-03
record); one launch at the other settings 30.09-34.97. Adopted: one launch.

``--grid`` also measures the bench_qkv.py rows that its quick grid skips
(Wan T = 2520 norm + RoPE and bias + norm + RoPE + V, decode heads 4 and 8),
through the benchmark's own row builders.

Every candidate is verified against the reference before it is timed
(CUDA-graph replay over L2-rotated inputs). Writes ``tune_qkv.json`` to --out.

Measured on H200: prefill 560 tokens pairs_strided 8.03 us; split 3.59-3.62 us
wherever a thread holds 16 bytes and a program >= 2 warps (the rule: 8 vectors x 8
warps, 3.59), 3.89-3.99 at 8 bytes per thread, ~5.0 with one-warp programs; compile
7.34 us, same-size copy 3.30 us. Decode 10 tokens: 1.31-1.40 us for every setting
but BLOCK_V = 16 (1.66), compile 3.51 us. The launch rule (``vector_config``) stays.
Wan T = 2520 (``--wan``, the sweep before the exact-chunk modes existed, norm + RoPE
only): ``row_config`` fastest of its four settings, 20.09 us at 24 heads (84% of a
same-size copy), 34.15 us at 40 heads (78%); twice the warps or early table loads
6-62% slower.
The exact-chunk modes (H200, 2026-12-04, ``--wan``, registers a thread from the launched
kernel; us, rule / best other): norm + RoPE T = 2520 / 4096 at 24 heads 20.07 / 19.61
(512 x 3, hold nothing, 4 warps, 48 regs) and 29.52 / 30.20 (the same); at 40 heads
33.39 / 31.81 and 51.18 / 51.04 (512 x 5, hold nothing, 4 warps); bias + norm + RoPE +
V: the rule fastest at all four shapes (27.37 / 41.99 at 24 heads, 49.95 / 77.74 at
40; the next 7-10% slower). Fewer registers did not buy speed: every 8-warp exact-chunk
program (32-93 registers against the rule's 74-104) was 11-53% slower, so
occupancy is not what holds these rows at 78-88% of copy bandwidth. The rule stays (the
one faster mode wins 2-5% on the norm-only function at two shapes and loses at the
others).
"""

import argparse
import importlib
import itertools
import json
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench import harness  # noqa: E402
from flashrt_tools.repo import ROOT, load_file, select  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built, reference_of  # noqa: E402

BF16 = torch.bfloat16
QH, KVH, HD, MAX_S = 8, 1, 256, 1024
PI05 = (("encoder prefill", 560, 0), ("decoder", 10, 560))
SWEEP = [(1, 1), (1, 2), (2, 2), (2, 4), (4, 4), (4, 8), (8, 8), (16, 8)]  # (BLOCK_V, warps)


@triton.jit
def _pairs_strided_kernel(x_ptr, rope_ptr, q_ptr, k_ptr, v_ptr, n_rows, seq, cache_offset, max_s,
                          QH: tl.constexpr, KVH: tl.constexpr, HD: tl.constexpr,
                          BLOCK_V: tl.constexpr, BLOCK_P: tl.constexpr):
    """The earlier design: stride-2 element loads and stores of each pair."""
    P: tl.constexpr = HD // 2
    H: tl.constexpr = QH + 2 * KVH
    i_v = tl.program_id(0).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)
    m_v = i_v < n_rows * H
    r = i_v // H
    h = i_v % H
    b = r // seq
    s = r % seq
    o_p = tl.arange(0, BLOCK_P)[None, :]
    m = m_v[:, None] & (o_p < P)
    p_x = x_ptr + i_v[:, None] * HD + 2 * o_p
    x_a = tl.load(p_x, mask=m, other=0.0)
    x_b = tl.load(p_x + 1, mask=m, other=0.0)
    p_r = rope_ptr + (s * HD)[:, None] + 2 * o_p
    c = tl.load(p_r, mask=m, other=0.0).to(tl.float32)
    sn = tl.load(p_r + 1, mask=m, other=0.0).to(tl.float32)
    d = cache_offset + s
    fa = x_a.to(tl.float32)
    fb = x_b.to(tl.float32)
    is_q = h < QH
    is_v = h >= QH + KVH
    keep = is_v[:, None]
    y_a = tl.where(keep, x_a, (fa * c - fb * sn).to(x_a.dtype))
    y_b = tl.where(keep, x_b, (fa * sn + fb * c).to(x_b.dtype))
    hk = h - QH - tl.where(is_v, KVH, 0)
    o_o = tl.where(is_q, r * QH + h, (b * max_s + d) * KVH + hk) * HD
    o_o = o_o[:, None] + 2 * o_p
    p_o = tl.where(is_q[:, None], q_ptr + o_o, tl.where(keep, v_ptr + o_o, k_ptr + o_o))
    tl.store(p_o, y_a, mask=m)
    tl.store(p_o + 1, y_b, mask=m)


def _inputs(cases, S, off, dev, g):
    kw = cases.kvcache_inputs(1, S, QH, KVH, HD, off, MAX_S, dev, g)
    theirs = {"k_cache": kw["k_cache"].clone(), "v_cache": kw["v_cache"].clone()}
    return kw, torch.empty(1, S, QH, HD, dtype=BF16, device=dev), theirs


def _eager(reference, S, off):
    def run(s):
        kw, caches = s[0], s[2]
        x = kw["packed_qkv"].view(1, S, QH + 2 * KVH, HD)
        fr = kw["rope"][:S, 0::2].float()[None, :, None, :]
        fi = kw["rope"][:S, 1::2].float()[None, :, None, :]
        q = reference.rope_pairs(x[:, :, :QH].float(), fr, fi).to(BF16)
        k = reference.rope_pairs(x[:, :, QH:QH + KVH].float(), fr, fi).to(BF16)
        caches["k_cache"][:, off:off + S] = k
        caches["v_cache"][:, off:off + S] = x[:, :, QH + KVH:]
        return q, caches["k_cache"], caches["v_cache"]
    return run


def _launcher(kernel_fn, S, off, block_v, num_warps, split):
    n_vec = S * (QH + 2 * KVH)
    grid = (triton.cdiv(n_vec, block_v),)

    def run(s):
        kw, q = s[0], s[1]
        args = (kw["packed_qkv"], kw["rope"], q, kw["k_cache"], kw["v_cache"])
        if split:
            kernel_fn[grid](*args, kw["rope"], S, S, off, MAX_S, QH=QH, KVH=KVH, HD=HD,
                            HAS_POS=False, BLOCK_V=block_v, BLOCK_D=HD, num_warps=num_warps)
        else:
            kernel_fn[grid](*args, S, S, off, MAX_S, QH=QH, KVH=KVH, HD=HD, BLOCK_V=block_v,
                            BLOCK_P=HD // 2, num_warps=num_warps)
        return q, kw["k_cache"], kw["v_cache"]
    return run


def _judge(got, want):
    return [compare(f, g, w) for f, g, w in zip(("bf16", "bf16", "exact"), got, want)]


def _time(name, fn, sets, want, log):
    verdicts = _judge(fn(sets[0]), want)
    if not all(v.ok for v in verdicts):
        log(f"    {name:24s} REJECT {'; '.join(v.message for v in verdicts)}")
        return {"name": name, "ok": False}
    us = harness.graph_us(fn, sets)
    return {"name": name, "ok": True, "us": us}


def kvcache_sweep(kernel, cases, log):
    reference = reference_of(kernel)
    split_rope = importlib.import_module(f"{kernel.__name__}.split_rope")
    common = importlib.import_module(f"{kernel.__name__}._common")
    dev = torch.device("cuda")
    out = []
    for label, S, off in PI05:
        nbytes = S * (QH + 2 * KVH) * HD * 2 * 2 + S * HD * 2
        sets = [_inputs(cases, S, off, dev, torch.Generator().manual_seed(i))
                for i in range(harness.rotation_sets(nbytes))]
        eager = _eager(reference, S, off)
        want = eager(sets[0])
        rows = [_time("eager", eager, sets, want, log)]
        compiled, status = harness.verified_compile(eager, sets, _judge)
        rows.append(_time("compile", compiled, sets, want, log) if compiled
                    else {"name": "compile", "ok": False, "status": status})
        n_vec = S * (QH + 2 * KVH)
        rule = common.vector_config(n_vec, HD, dev)
        rows.append(_time(f"pairs_strided {rule}", _launcher(_pairs_strided_kernel, S, off, *rule,
                                                             False), sets, want, log))
        rows.append(_time("package (wrapper)", lambda s: kernel.qkv_split_rope_kvcache_bf16(
            **s[0], q_out=s[1]), sets, want, log))
        for bv, nw in sorted(set(SWEEP) | {rule}):
            tag = f"split bv={bv} nw={nw}" + (" (rule)" if (bv, nw) == rule else "")
            rows.append(_time(tag, _launcher(split_rope._rope_kvcache_kernel, S, off, bv, nw,
                                             True), sets, want, log))
        copy_us = harness.same_size_copy_us(nbytes, len(sets))
        for r in rows:
            if r.get("us"):
                r["pct_same_size_copy"] = 100.0 * copy_us / r["us"]
        log(f"  PI0.5 {label} S={S}: {nbytes / 1e6:.2f} MB, copy {copy_us:.2f} us")
        for r in rows:
            log(f"    {r['name']:28s} " + (f"{r['us']:7.2f} us  {r['pct_same_size_copy']:5.1f}% copy"
                                          if r.get("us") else f"not timed {r.get('status', '')}"))
        out.append({"shape": f"S={S},QH={QH},KVH={KVH},hd={HD},off={off}", "model": label,
                    "bytes": nbytes, "same_size_copy_us": copy_us, "rows": rows})
        del sets
        torch.cuda.empty_cache()
    return out


GRID_ONLY = [f"{fn} T=2520,H={h},hd=128" for fn in ("qkv_split_norm_rope_bf16",
                                                     "qkv_split_bias_norm_rope_v_bf16")
             for h in (24, 40)]
DECODE_ONLY = [f"{fn} {arg}={n},hd=128" for n in (4, 8) for fn, arg in (
    ("decode_q_norm_rope_stage_bf16", "heads"), ("decode_k_norm_rope_kvwrite_bf16", "kv_heads"))] + \
    [f"decode_k_norm_rope_kvwrite_devpos_bf16 kv_heads={n},hd=128,max=1024" for n in (4, 8)]


def unmeasured_grid(kernel, copy_gbps, log):
    """The full-grid rows of bench_qkv.py that its quick grid skips, via its own builders."""
    from flashrt_tools.bench.run import BenchContext
    bench = load_file(ROOT / "flashrt-qkv-cache-rope" / "benchmarks" / "bench_qkv.py",
                      "_flashrt_bench_qkv_tune")
    ctx = BenchContext(kernel, reference_of(kernel), copy_gbps, False, log)
    bench.WAN_T, bench.DECODE_HEADS = (2520,), (4, 8)  # build only the skipped rows' inputs
    harness.select_rows(GRID_ONLY + DECODE_ONLY)
    dev = torch.device("cuda")
    rows = [r for r in bench._wan_rows(ctx, dev) + bench._decode_rows(ctx, dev)
            if not r.get("skipped")]
    harness.select_rows(None)
    for note in bench.target_notes(rows):
        log("  " + note)
    return rows


WAN_SHAPES = ((2520, 24), (2520, 40), (4096, 24), (4096, 40))
WAN_FUNCTIONS = (("qkv_split_norm_rope_bf16", False), ("qkv_split_bias_norm_rope_v_bf16", True))


def wan_candidates(common, D, T, dev):
    """The rule, then around it: twice its warps, the other table placement, and the
    exact-chunk split (``exact_chunks``) at 4 / 8 warps holding the fp32 halves, the
    loaded words or nothing across the reduction."""
    rule = common.row_config(D, T, dev)
    cands = [rule, rule._replace(num_warps=2 * rule.num_warps), rule._replace(early=not rule.early)]
    exact = common.exact_chunks(D // 2)
    if exact:
        cands += [rule._replace(chunk=exact[0], n_chunks=exact[1], num_warps=w, hold=h)
                  for h in (0, 1, 2) for w in (4, 8)]
    return rule, cands


def _verified_us(fn, sets, want):
    """(ok, graph-replay us or None): ``fn`` checked against ``want`` on set 0 first."""
    ok = all(compare("bf16", g, w).ok for g, w in zip(fn(sets[0]), want))
    return ok, harness.graph_us(fn, sets) if ok else None


def _config_line(lead, r, copy_us):
    """One log line of a whole-hidden kernel candidate."""
    c = r["config"]
    return (f"    {lead}chunk={c['chunk']}x{c['n_chunks']} hold={c['hold']} "
            f"warps={c['num_warps']:2d} early={int(c['early'])} regs={r.get('regs', '?')}"
            + (" (rule)" if r["rule"] else "       ")
            + (f" {r['us']:7.2f} us {100 * copy_us / r['us']:5.1f}% copy" if r["ok"]
               else " REJECT"))


def wan_sweep(kernel, cases, log):
    """The whole-hidden kernel at ``row_config`` and around it (``wan_candidates``), both
    of its main functions; the launcher reads ``row_config`` from its module at call
    time (patched per candidate) and returns the launched kernel (its registers go
    into the record). Every candidate is verified against the reference first."""
    reference = reference_of(kernel)
    norm_rope = importlib.import_module(f"{kernel.__name__}.norm_rope")
    common = importlib.import_module(f"{kernel.__name__}._common")
    rule_fn, launch_fn = norm_rope.row_config, norm_rope._launch_wan
    launched = {}

    def recording_launch(*args, **kw):
        launched["kernel"] = launch_fn(*args, **kw)
    dev = torch.device("cuda")
    out = []
    try:
        norm_rope._launch_wan = recording_launch
        for (T, H), (fn_name, bias) in itertools.product(WAN_SHAPES, WAN_FUNCTIONS):
            D = H * 128
            n_out = 3 if bias else 2
            nbytes = T * n_out * D * 2 * 2 + 2 * T * 64 * 4 + 2 * D * 2 + (3 * D * 2 if bias else 0)
            sets = []
            for i in range(harness.rotation_sets(nbytes)):
                kw = cases.wan_inputs(1, T, H, 128, dev, torch.Generator().manual_seed(i), bias=bias)
                sets.append((kw, [torch.empty(1, T, H, 128, dtype=BF16, device=dev)
                                  for _ in range(n_out)]))
            want = getattr(reference, fn_name)(**sets[0][0])
            fn = lambda s, fn_name=fn_name: getattr(kernel, fn_name)(  # noqa: E731
                **s[0], **dict(zip(("q_out", "k_out", "v_out"), s[1])))
            rule, cands = wan_candidates(common, D, T, dev)
            rows = []
            for cfg in cands:
                norm_rope.row_config = lambda D, n, device, cfg=cfg: cfg
                ok, us = _verified_us(fn, sets, want)
                rows.append({"config": cfg._asdict(), "rule": cfg == rule, "ok": ok, "us": us,
                             **harness.kernel_resources(launched.get("kernel"))})
            norm_rope.row_config = rule_fn
            copy_us = harness.same_size_copy_us(nbytes, len(sets))
            log(f"  {fn_name} T={T} H={H}: {nbytes / 1e6:.1f} MB, same-size copy {copy_us:.2f} us")
            for r in rows:
                log(_config_line("", r, copy_us))
            out.append({"function": fn_name, "shape": f"T={T},H={H},hd=128", "bytes": nbytes,
                        "same_size_copy_us": copy_us, "rows": rows})
            del sets
            torch.cuda.empty_cache()
    finally:
        norm_rope.row_config, norm_rope._launch_wan = rule_fn, launch_fn
    return out


def joint3_sweep(kernel, cases, log, shape=(2520, 16, 16, 24)):
    """qkv_split_joint3_cat_bf16 at the bench's VLA shape (L = 2520 / 16 / 16, 24 heads):
    one launch per segment against all three in one launch (``JOINT3_ONE_LAUNCH``), at
    the rule's tiles and at each ``wan_candidates`` setting; verified first."""
    reference = reference_of(kernel)
    norm_rope = importlib.import_module(f"{kernel.__name__}.norm_rope")
    common = importlib.import_module(f"{kernel.__name__}._common")
    rule_fn, flag = norm_rope.row_config, norm_rope.JOINT3_ONE_LAUNCH
    dev = torch.device("cuda")
    L_v, L_a, L_u, H = shape
    D = H * 128
    nbytes = (L_v + L_a + L_u) * 3 * D * 2 * 2 + 2 * L_v * 64 * 4 + 6 * D * 2 + 3 * D * 2
    sets = [cases.joint3_inputs(L_v, L_a, L_u, H, 128, dev, torch.Generator().manual_seed(i))
            for i in range(harness.rotation_sets(nbytes))]
    want = reference.qkv_split_joint3_cat_bf16(**sets[0])
    fn = lambda s: kernel.qkv_split_joint3_cat_bf16(**s)  # noqa: E731
    rule, cands = wan_candidates(common, D, L_v, dev)
    rows = []
    try:
        for cfg, one in [(rule, False)] + [(c, True) for c in cands]:
            # per segment: the short segments keep their own table placement (the one
            # launch takes the video's for all three)
            norm_rope.row_config = lambda D_, n, device, cfg=cfg: (
                cfg if n > 64 else cfg._replace(early=rule_fn(D_, n, device).early))
            norm_rope.JOINT3_ONE_LAUNCH = one
            ok, us = _verified_us(fn, sets, want)
            rows.append({"config": cfg._asdict(), "one_launch": one, "rule": cfg == rule,
                         "ok": ok, "us": us})
    finally:
        norm_rope.row_config, norm_rope.JOINT3_ONE_LAUNCH = rule_fn, flag
    copy_us = harness.same_size_copy_us(nbytes, len(sets))
    log(f"  joint3 L={L_v}/{L_a}/{L_u} H={H}: {nbytes / 1e6:.1f} MB, same-size copy {copy_us:.2f} us")
    for r in rows:
        log(_config_line("one launch  " if r["one_launch"] else "per segment ", r, copy_us))
    return {"shape": f"L={L_v}/{L_a}/{L_u},H={H},hd=128", "bytes": nbytes,
            "same_size_copy_us": copy_us, "rows": rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--grid", action="store_true", help="also the rows the quick grid skips")
    ap.add_argument("--no-sweep", action="store_true", help="skip the KV-cache sweep")
    ap.add_argument("--wan", action="store_true", help="the Wan kernel's launch settings")
    ap.add_argument("--joint3", action="store_true", help="joint3: one launch or three")
    args = ap.parse_args()
    log = print
    env = harness.environment()
    env["copy_gbps"] = harness.copy_bandwidth_gbps()
    log(f"{env['gpu']}: copy ceiling {env['copy_gbps']:.0f} GB/s")
    kernel = load_built(select(["qkv-cache-rope"])[0])
    cases = load_file(ROOT / "flashrt-qkv-cache-rope" / "tests" / "cases.py",
                      "_flashrt_cases_flashrt_qkv_cache_rope")
    record = {"environment": env}
    if not args.no_sweep:
        record["kvcache"] = kvcache_sweep(kernel, cases, log)
    if args.wan:
        record["wan"] = wan_sweep(kernel, cases, log)
    if args.joint3:
        record["joint3"] = joint3_sweep(kernel, cases, log)
    if args.grid:
        record["grid"] = unmeasured_grid(kernel, env["copy_gbps"], log)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune_qkv.json").write_text(json.dumps(record, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
