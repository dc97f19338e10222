"""Decode-size (M <= 16) FP8 GEMM and FFN-stack sweep: how the decode launch rule was chosen.

PDL probe: a 20 us spin kernel then a probe kernel, both launched with programmatic
dependent launch, eager and under CUDA-graph replay: how early the probe starts, how
soon its grid-dependency wait returns after the spin ends.

GEMM rows: configurations of the decode (swap) kernel (``fp8_gemm.launch_with_config``:
BLOCK_N, BLOCK_K, K splits, stages) in four launch modes (MODE_ARGS: no PDL; PDL; PDL +
L2 weight prefetch; the same releasing the next kernel after the K loop instead of
after the wait), at the decoder / SigLIP / encoder K, N, beside torch._scaled_mm (M
padded to 16 where cuBLASLt needs it). Each row is verified against the fp32
fake-quant GEMM before it is timed (CUDA-graph replay over L2-rotated weight sets,
distinct weights per call, as a model's layers are).

Stack rows: PI0.5 decoder FFNs (1024 -> 4096 -> 1024, 18 layers, distinct weights, each
layer on its own calibrated BF16 input), GELU (flashrt-fp8-ffn) and GeGLU
(flashrt-fp8-swiglu-ffn): the package call (two launches per layer, PDL) vs the
three-launch path without PDL (quantize kernel, up, down; same configurations, so the
two must agree bit for bit, as must graph replay and eager), vs the benchmark's
torch._scaled_mm composition, eager and compiled (verified per layer); at M = 10 also
whole stacks of candidate configurations.

Measured on H200 (graph replay): the probe starts 19.6 us before the spin ends, its
wait returns 0.74 us after; decoder up GEMM (M = 10) 4.63 us without PDL, 4.10 with;
GELU stack M = 10: 218 us (two launches, PDL) vs 233 (three, no PDL) vs 267 (compiled
composition); the rule's configurations beat the candidate stacks (220-241 us).

Run: python3 flashrt-fp8-ffn/benchmarks/tune_fp8_decode.py --out DIR [--budget S]
     [--stacks gelu:10 gelu:1 geglu:10] [--compiled gelu:10] [--no-gemm] [--quick]
Writes DIR/tune_fp8_decode.json; prints one line per row.
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
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait, globaltimer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from flashrt_tools.bench.fp8_ffn import (BENCH_TOL, BF16, FP8, eager_gemm, fp8_weight,  # noqa: E402
                                         pad16, q8, scaled_mm, scaled_mm_needs_pad)
from flashrt_tools.bench.harness import graph_us, rotation_sets  # noqa: E402
from flashrt_tools.repo import Package  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built  # noqa: E402

START = time.time()
ROWS = []


def swap(bk, split, bn=64, warps=4, stages=4, K=None):
    kps = -(-K // (bk * split)) * bk
    return ("swap", 16, bn, bk, -(-K // kps), kps, warps, stages)


PDL_MODES = {0: "no PDL", 1: "PDL", 2: "PDL+L2 prefetch", 3: "PDL+prefetch late"}
# mode -> launch_with_config(pdl, prefetch=, early_release=): "late" releases the next
# kernel after the K loop instead of right after the grid-dependency wait
MODE_ARGS = {0: (False, False, True), 1: (True, False, True), 2: (True, True, True),
             3: (True, True, False)}


# (name, M list, K, N, gated, [(cfg or None = the rule, PDL modes)])
def gemm_grid(quick):
    rule_modes, modes = (0, 1, 2, 3), (0, 2, 3)
    up = [(None, rule_modes), (swap(128, 1, K=1024), (2, 3)),
          (swap(256, 1, bn=32, K=1024), modes)]
    down = [(None, rule_modes), (swap(256, 4, bn=32, K=4096), modes),
            (swap(256, 8, K=4096), (2, 3)), (swap(256, 4, K=4096), (2,))]
    grid = [
        ("decoder up", (10,), 1024, 4096, False, up),
        ("decoder down", (10,), 4096, 1024, False, down),
        ("decoder gate_up (GeGLU)", (10,), 1024, 8192, True,
         [(None, modes), (swap(256, 1, bn=32, K=1024), (0, 2))]),
        ("encoder down", (16,), 16384, 2048, False, [(None, modes)]),
        ("SigLIP down", (16,), 4304, 1152, False, [(None, (0, 2))]),
        ("decoder up M=64", (64,), 1024, 4096, False, [(None, (0, 2))]),
    ]
    return grid[:2] if quick else grid


@triton.jit
def _spin_kernel(t_ptr, ns, PDL: tl.constexpr):
    if PDL:
        gdc_launch_dependents()
    t0 = globaltimer()
    t = t0
    while t - t0 < ns:
        t = globaltimer()
    tl.store(t_ptr + tl.program_id(0), t)


@triton.jit
def _probe_kernel(t_ptr, PDL: tl.constexpr):
    t0 = globaltimer()
    if PDL:
        gdc_wait()
    tl.store(t_ptr + tl.program_id(0) * 2, t0)
    tl.store(t_ptr + tl.program_id(0) * 2 + 1, globaltimer())


def pdl_probe():
    """Does the probe kernel start before the 20 us spin kernel ends (PDL overlap), eager
    and under CUDA-graph capture? Reports probe start - spin end, in us."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    t_spin = torch.zeros(sms, dtype=torch.int64, device="cuda")
    t_probe = torch.zeros(2 * sms, dtype=torch.int64, device="cuda")

    def pair():
        _spin_kernel[(sms,)](t_spin, 20000, PDL=True, num_warps=1, launch_pdl=True)
        _probe_kernel[(sms,)](t_probe, PDL=True, num_warps=1, launch_pdl=True)

    def report(how):
        torch.cuda.synchronize()
        end = int(t_spin.max())
        start, after = int(t_probe[0::2].min()), int(t_probe[1::2].min())
        log(f"  PDL probe ({how}): probe start - spin end {(start - end) / 1e3:+.2f} us, "
            f"after wait {(after - end) / 1e3:+.2f} us")
        ROWS.append({"kind": "pdl_probe", "how": how, "start_minus_end_us": (start - end) / 1e3,
                     "after_wait_minus_end_us": (after - end) / 1e3})
    pair()
    pair()
    report("eager")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        pair()
    graph.replay()
    report("graph replay")


def log(msg):
    print(f"[{time.time() - START:5.1f}s] {msg}", flush=True)


def gemm_rows(gm, budget, quick):
    pad = scaled_mm_needs_pad()
    for name, Ms, K, N, gated, variants in gemm_grid(quick):
        H = N // 2 if gated else N
        nbytes = N * K + 2 * 16 * N
        sets = []
        for i in range(rotation_sets(nbytes)):
            g = torch.Generator(device="cuda").manual_seed(i)
            w, sw = fp8_weight(N, K, g)
            sets.append((w, sw))
        for M in Ms:
            g = torch.Generator(device="cuda").manual_seed(100 + M)
            x = q8(torch.randn((M, K), generator=g, device="cuda"), torch.tensor(1 / 16.0))
            sx = torch.tensor([1 / 16.0], device="cuda")
            so = torch.tensor([1 / 64.0], device="cuda")
            c = torch.empty(M, N, dtype=BF16, device="cuda")
            q = torch.empty(M, H, dtype=FP8, device="cuda")
            xp = torch.zeros((pad16(M), K), device="cuda").to(FP8)
            xp[:M] = x
            lib = graph_us(lambda s: scaled_mm(xp if pad else x, s[0], sx, s[1]), sets)
            rule = gm.gemm_config(M, N, K, x.device)
            todo = [(c, ms, m) for c, ms in variants for m in ms]
            for cfg, modes, mode in (todo if M == Ms[0] else todo[:3]):
                label = ("rule " if cfg is None else "") + PDL_MODES[mode]
                if time.time() - START > budget:
                    log(f"  {name} M={M} {label}: skipped (time budget)")
                    continue
                cfg = rule if cfg is None else cfg

                def run(s, cfg=cfg, mode=mode):
                    pdl, prefetch, early = MODE_ARGS[mode]
                    gm.launch_with_config(cfg, pdl, x, s[0], sx, s[1], c, so=so, q=q,
                                          act=2 if gated else 0, prefetch=prefetch,
                                          early_release=early)
                    return c
                try:
                    got = run(sets[0]).clone()
                    want = eager_gemm(x, sets[0][0], sx, sets[0][1])
                    v = compare("gemm", got, want, **BENCH_TOL["gemm"])
                    us = graph_us(run, sets) if v.ok else None
                except Exception as e:  # a configuration that does not compile is reported
                    v, us = None, None
                    log(f"  {name} M={M} {label}: ERROR {type(e).__name__}: {str(e)[:200]}")
                row = {"kind": "gemm", "shape": name, "M": M, "K": K, "N": N, "label": label,
                       "cfg": list(cfg), "pdl_mode": mode, "us": us, "scaled_mm_us": lib,
                       "ok": bool(v and v.ok), "check": v.message if v else "error"}
                ROWS.append(row)
                if us:
                    split = f"split{cfg[4]:<2d}" if cfg[0] == "swap" else "tile   "
                    log(f"  {name[:15]:15s} M={M:<2d} {cfg[0]} bn{cfg[2]:<3d} bk{cfg[3]:<4d} "
                        f"{split} {label:21s} {us:6.2f} us  x_scaled_mm {lib / us:4.2f} "
                        f"({lib:.2f})")
                elif v is not None:
                    log(f"  {name} M={M} {label}: REJECT {v.message}")
        del sets
        torch.cuda.empty_cache()


def _calibrated(layers, inputs, up_fn):
    """Static scales from each layer's own input: input amax, hidden activation amax."""
    for L, x in zip(layers, inputs):
        L["input_scale"] = (x.float().abs().amax() / (0.9 * 448)).reshape(1)
        L["hidden_scale"] = (up_fn(q8(x, L["input_scale"]), L).abs().amax()
                             / (0.9 * 448)).reshape(1)


def _buffers(n, M, K, H_cols, H, N):
    return [(torch.empty(M, K, dtype=FP8, device="cuda"),
             torch.empty(M, H_cols, dtype=BF16, device="cuda"),
             torch.empty(M, H, dtype=FP8, device="cuda"),
             torch.empty(M, N, dtype=BF16, device="cuda")) for _ in range(n)]


def _quantize_no_pdl(gm, x, s, xq):
    M, K = x.shape
    gm._quantize_input_kernel[(M, -(-K // 1024))](x, s, xq, M, M, K, BLOCK_R=1, BLOCK_K=1024,
                                                  num_warps=4)


def gelu_stack(gm, M, K=1024, H=4096, N=1024, n_layers=18):
    """PI0.5 decoder GELU FFN: bf16_fp8_gelu_mlp_bf16 (flashrt-fp8-ffn)."""
    import torch.nn.functional as F
    from bench_fp8_ffn import _eager_layer, _layer_weights, _library_layer
    kernel = load_built(Package("flashrt-fp8-ffn"))
    g = torch.Generator(device="cuda").manual_seed(0)
    layers = [_layer_weights(K, H, N, g) for _ in range(n_layers)]
    inputs = [torch.randn((M, K), generator=g, device="cuda").to(BF16) for _ in layers]
    _calibrated(layers, inputs, lambda xq, L: F.gelu(eager_gemm(
        xq, L["up_weight"], L["input_scale"], L["up_weight_scale"]).float()
        + L["up_bias"].float(), approximate="tanh"))
    new_bufs, old_bufs = _buffers(n_layers, M, K, H, H, N), _buffers(n_layers, M, K, H, H, N)

    def ours(i, x):
        L = layers[i]
        return kernel.bf16_fp8_gelu_mlp_bf16(
            x, L["up_weight"], L["up_bias"], L["down_weight"], L["down_bias"],
            L["input_scale"], L["up_weight_scale"], L["hidden_scale"], L["down_weight_scale"],
            *new_bufs[i])

    def previous(i, x):
        """Quantize kernel + up + down, no PDL (the previous design)."""
        L, (xq, hb, hq, out) = layers[i], old_bufs[i]
        _quantize_no_pdl(gm, x, L["input_scale"], xq)
        gm.launch_with_config(gm.gemm_config(M, H, K, x.device), False, xq, L["up_weight"],
                              L["input_scale"], L["up_weight_scale"], hb, bias=L["up_bias"],
                              so=L["hidden_scale"], q=hq, epi=gm.EPI_GELU_QUANT)
        gm.launch_with_config(gm.gemm_config(M, N, H, x.device), False, hq, L["down_weight"],
                              L["hidden_scale"], L["down_weight_scale"], out,
                              bias=L["down_bias"], epi=gm.EPI_BIAS_ROUNDED)
        return out

    def with_configs(up_cfg, down_cfg, mode):
        """A layer with explicit configurations: quantize fused in the up GEMM."""
        pdl, prefetch, early = MODE_ARGS[mode]

        def layer(i, x):
            L, (xq, hb, hq, out) = layers[i], new_bufs[i]
            gm.launch_with_config(up_cfg, pdl, xq, L["up_weight"], L["input_scale"],
                                  L["up_weight_scale"], hb, bias=L["up_bias"],
                                  so=L["hidden_scale"], q=hq, epi=gm.EPI_GELU_QUANT, x=x,
                                  prefetch=prefetch, early_release=early)
            gm.launch_with_config(down_cfg, pdl, hq, L["down_weight"], L["hidden_scale"],
                                  L["down_weight_scale"], out, bias=L["down_bias"],
                                  epi=gm.EPI_BIAS_ROUNDED, prefetch=prefetch,
                                  early_release=early)
            return out
        return layer

    def candidates():
        device = inputs[0].device
        rule = (gm.gemm_config(M, H, K, device), gm.gemm_config(M, N, H, device))
        todo = [(rule, 3)] + [(c, m) for c in STACK_CANDIDATES for m in (2, 3)]
        for (up_cfg, down_cfg), mode in todo if M == 10 else []:
            yield f"up {up_cfg[2:5]} down {down_cfg[2:5]} {PDL_MODES[mode]}", \
                with_configs(up_cfg, down_cfg, mode)

    return (f"GELU M={M},K={K},H={H},N={N},layers={n_layers}", layers, inputs, ours, previous,
            new_bufs, old_bufs, _eager_layer, _library_layer, candidates)


# (up, down) configurations tried as whole decoder stacks (bn, bk, split shown)
STACK_CANDIDATES = [
    (swap(256, 1, bn=32, K=1024), swap(256, 4, bn=32, K=4096)),
    (swap(256, 1, K=1024), swap(256, 4, bn=32, K=4096)),
]


def geglu_stack(M, K=1024, H=4096, N=1024, n_layers=18):
    """PI0.5 decoder GeGLU FFN: bf16_fp8_geglu_mlp_bf16 (flashrt-fp8-swiglu-ffn)."""
    import functools
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "flashrt-fp8-swiglu-ffn"
                           / "benchmarks"))
    from bench_fp8_swiglu_ffn import _act_mul, _eager_layer, _layer_weights, _library_layer
    kernel = load_built(Package("flashrt-fp8-swiglu-ffn"))
    gm = importlib.import_module(kernel.__name__ + ".fp8_gemm")
    g = torch.Generator(device="cuda").manual_seed(0)
    layers = [_layer_weights(K, H, N, g) for _ in range(n_layers)]
    inputs = [torch.randn((M, K), generator=g, device="cuda").to(BF16) for _ in layers]
    _calibrated(layers, inputs, lambda xq, L: _act_mul(eager_gemm(
        xq, L["gate_up_weight"], L["input_scale"], L["gate_up_weight_scale"]), "geglu"))
    new_bufs = _buffers(n_layers, M, K, 2 * H, H, N)
    old_bufs = _buffers(n_layers, M, K, 2 * H, H, N)

    def ours(i, x):
        L = layers[i]
        return kernel.bf16_fp8_geglu_mlp_bf16(
            x, L["gate_up_weight"], L["down_weight"], L["input_scale"],
            L["gate_up_weight_scale"], L["hidden_scale"], L["down_weight_scale"], *new_bufs[i])

    def previous(i, x):
        L, (xq, gu, hq, out) = layers[i], old_bufs[i]
        _quantize_no_pdl(gm, x, L["input_scale"], xq)
        gm.launch_with_config(gm.gemm_config(M, 2 * H, K, x.device), False, xq,
                              L["gate_up_weight"], L["input_scale"], L["gate_up_weight_scale"],
                              gu, so=L["hidden_scale"], q=hq, act=gm.ACT_GELU)
        gm.launch_with_config(gm.gemm_config(M, N, H, x.device), False, hq, L["down_weight"],
                              L["hidden_scale"], L["down_weight_scale"], out)
        return out

    return (f"GeGLU M={M},K={K},H={H},N={N},layers={n_layers}", layers, inputs, ours, previous,
            new_bufs, old_bufs, functools.partial(_eager_layer, act="geglu"),
            functools.partial(_library_layer, act="geglu"), lambda: [])


def _same(a, b):
    return torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def stack_row(spec):
    """Verify and time one stack; returns a closure timing the compiled composition."""
    from flashrt_tools.bench.fp8_ffn import _compiled
    (name, layers, inputs, ours, previous, new_bufs, old_bufs, eager_layer, library_layer,
     candidates) = spec

    def stack(fn):
        return lambda _: [fn(i, x) for i, x in enumerate(inputs)]

    eager_out = []
    for i, x in enumerate(inputs):
        a, _ = ours(i, x), previous(i, x)
        eager_out.append([t.clone() for t in new_bufs[i]])
        same = all(_same(p, r) for p, r in zip(new_bufs[i], old_bufs[i]))
        v = compare("gemm", a, eager_layer(x, layers[i]), **BENCH_TOL["gemm"])
        if not (same and v.ok):
            log(f"  {name} layer {i}: bit-equal to previous={same} {v.message}")
    row = {"kind": "stack", "shape": name}
    row["ours_us"] = graph_us(stack(ours), [0], 4)
    row["graph_replay_equals_eager"] = all(
        _same(p, r) for bufs, want in zip(new_bufs, eager_out) for p, r in zip(bufs, want))
    row["previous_us"] = graph_us(stack(previous), [0], 4)
    row["library_eager_us"] = graph_us(stack(lambda i, x: library_layer(x, layers[i])), [0], 4)
    log(f"  {name}: ours {row['ours_us']:.1f} us  3 launches no PDL {row['previous_us']:.1f}  "
        f"_scaled_mm composition eager {row['library_eager_us']:.1f}  "
        f"(graph replay == eager: {row['graph_replay_equals_eager']})")
    ROWS.append(row)
    for label, fn in candidates():
        bad = [i for i, x in enumerate(inputs) if not compare(
            "gemm", fn(i, x), eager_layer(x, layers[i]), **BENCH_TOL["gemm"]).ok]
        us = None if bad else graph_us(stack(fn), [0], 4)
        ROWS.append({"kind": "stack_candidate", "shape": name, "label": label, "us": us,
                     "failed_layers": bad})
        log(f"  {name} {label}: " + (f"{us:.1f} us" if us else f"REJECT layers {bad}"))

    def compiled_composition():
        """torch.compile of the _scaled_mm composition (slow to compile: run last)."""
        ref = lambda i, x: eager_layer(x, layers[i])  # noqa: E731
        lib, status = _compiled(library_layer, layers, inputs, ref, BENCH_TOL["gemm"])
        row["library_status"] = status
        if lib:
            row["library_us"] = graph_us(stack(lib), [0], 4)
            log(f"  {name}: _scaled_mm composition compiled {row['library_us']:.1f} us "
                f"-> ours x{row['library_us'] / row['ours_us']:.2f}  ({status})")
        else:
            log(f"  {name}: _scaled_mm composition compiled: {status}")
    return compiled_composition


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--budget", type=float, default=600.0,
                   help="seconds; GEMM rows after it are skipped")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-gemm", action="store_true")
    p.add_argument("--stacks", nargs="*", default=["gelu:10", "geglu:10"],
                   help="decoder stacks to time, KIND:M with KIND gelu or geglu")
    p.add_argument("--compiled", nargs="*", default=["gelu:10", "geglu:10"],
                   help="stacks also timed against the compiled _scaled_mm composition")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    gm = importlib.import_module(load_built(Package("flashrt-fp8-ffn")).__name__ + ".fp8_gemm")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    log(f"{torch.cuda.get_device_name(0)}, {sms} SMs")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        pdl_probe()
        compiled = []
        for stack in args.stacks:
            kind, M = stack.split(":")
            spec = gelu_stack(gm, int(M)) if kind == "gelu" else geglu_stack(int(M))
            timed_compiled = stack_row(spec)
            if stack in args.compiled:
                compiled.append(timed_compiled)
        if not args.no_gemm:
            gemm_rows(gm, args.budget, args.quick)
        for run in compiled:
            if time.time() - START < args.budget + 10:
                run()
    finally:
        (out / "tune_fp8_decode.json").write_text(json.dumps(
            {"gpu": torch.cuda.get_device_name(0), "rows": ROWS}, indent=1))


if __name__ == "__main__":
    main()
