"""Decode-size (M <= 16) FP8 GEMM and FFN-stack sweep: how the decode launch rule was chosen.

Every candidate is a launch of ``fp8_gemm.launch_with_config``: a configuration from
the rule, from ``decode_config`` under other bounds (``programs_pct``: K-split programs
per 100 SMs; ``block_n``: 64-row tiles on wgmma, 32-row tiles on mma.sync), with sweep
options (``prefetch``: the L2 weight prefetch, by default on for weights up to
``PREFETCH_MAX_BYTES``; ``imprecise``: the tensor-core accumulation interval, which
changes the numerics: timed for information only), in one of four launch modes
(MODE_ARGS: no PDL; PDL; PDL + L2 weight prefetch by the rule, the package's launch on
Hopper; the same releasing the next kernel after the K loop).

Stack rows: PI0.5 decoder FFNs (1024 -> 4096 -> 1024, 18 layers, distinct weights, each
layer on its own calibrated BF16 input), GELU (flashrt-fp8-ffn) and GeGLU
(flashrt-fp8-swiglu-ffn): the package call (two launches per layer, PDL) vs three
launches without PDL (quantize kernel, up, down: must agree bit for bit, as must graph
replay and eager) vs the benchmark's torch._scaled_mm composition, eager and compiled
(verified per layer); at M = 10 also whole stacks of candidates (verified per layer).

GEMM rows: the candidates at the decoder / SigLIP / encoder K, N beside torch._scaled_mm
(M padded to 16 where cuBLASLt needs it), each verified against the fp32 fake-quant GEMM
before it is timed (CUDA-graph replay over L2-rotated weight sets, distinct weights per
call, as a model's layers are).

Measured on H200 (graph replay, 2026-12-01, the run that chose the current design):
GELU stack M = 10: 202.4 us with the epilogue operands read before the K loop, 212.4 us
with them read after it (the previous design, same bits), 272.3 us for the compiled
_scaled_mm composition (x1.35); GeGLU stack M = 10: 294.1 vs 299.1 us. Dropped after
that run: FP16-widened tiles on a loop-carried FP16 wgmma (GELU stack 271 us, GeGLU
418 us), the L2 prefetch split into one distinct piece per thread (202.9 / 294.0 us:
the duplicate per-row requests cost nothing). Not taken: 32-row tiles, GELU stack 204.0
us (up), 231.2 (down, 2.4 programs per SM), 274.6 (both); GeGLU 279.8 (both): a gain
there, but the down GEMM's rule is shared with the GELU stack (fused == staged needs
one rule per shape), and a gated-up-only rule was not timed as a stack. Decoder GEMMs:
up 3.19 us (_scaled_mm 4.41), down 7.25 (5.90; 6.86 with a 128-wide accumulation
interval: the promoted FP8 wgmma runs one 32-wide K step at a time), gate_up 6.07
(5.19); the 16384 -> 2048 encoder down GEMM (32 MB) 13.90 us without the prefetch,
18.54 with it: PREFETCH_MAX_BYTES.
Earlier: the PDL probe starts 19.6 us before the spin ends, its wait returns 0.74 us after.

2026-12-02 evening (H200, ``tune_fp8_decode.2026-12-02.stacks.json``): on the kernel of
that day, GELU stack M = 10: rule (64-row up tiles then) 171.1 us, 32-row up tiles 165.5,
32-row tiles for both with twice the down splits 164.7, 32-row down only 166.7; GeGLU M =
10: 248.1 against 263.0 for 32-row tiles on both. 32-row tiles became the rule where the
weight goes unsplit and they fit one wave (the GELU up GEMM; not the merged gate/up, whose
256 tiles would not): ``decode_config``. Then 8 warps per program (the ``w8`` candidates,
``tune_fp8_decode.2026-12-02.warps.json``, against the 64-row rule): 169.3-171.6 against
171.2; 32-row 8-warp up tiles 192.1, 8 warps with 2 stages 204.7: not taken. Last, on the
32-row up rule (``tune_fp8_decode.2026-12-02.down.json``: the STACK_CANDIDATES "bn32 down
x2 splits" and "down split x2" on both stacks): GELU 166.3 / 185.1 against 166.5, GeGLU
254.7 / 261.2 against 246.8: the down rule stays.

Run: python3 flashrt-fp8-ffn/benchmarks/tune_fp8_decode.py --out DIR [--budget S]
     [--stacks gelu:10 geglu:10] [--compiled gelu:10] [--no-gemm] [--quick] [--probe]
     [--no-three-launches]
Writes DIR/tune_fp8_decode.json; prints one line per row.
"""

import argparse
import importlib
import json
import signal
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
from flashrt_tools.bench.harness import graph_us, rotation_sets, same_bits  # noqa: E402
from flashrt_tools.repo import Package  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built  # noqa: E402

START = time.time()
ROWS = []
BUDGET = [600.0]  # seconds after START; --budget
THREE_LAUNCHES = [True]
COMPILE_S = 12.0  # torch.compile + verification of the _scaled_mm composition (H200 run)


PDL_MODES = {0: "no PDL", 1: "PDL", 2: "PDL+L2 prefetch", 3: "PDL+prefetch late"}
# mode -> launch_with_config(pdl, prefetch=, early_release=): "late" releases the next
# kernel after the K loop instead of right after the grid-dependency wait
MODE_ARGS = {0: (False, False, True), 1: (True, False, True), 2: (True, None, True),
             3: (True, None, False)}  # prefetch None: the package's rule
PACKAGE_MODE = 2  # the package's launch on Hopper

# launch_with_config options: the package's, without / with the L2 prefetch (PDL either way)
NEW = {}
NO_PREFETCH = {"prefetch": False}
PREFETCH = {"prefetch": True}
BN32 = (120, 32)      # decode_config(programs_pct=120, block_n=32): mma.sync tiles
BN32_X2 = (240, 32)   # the same with up to 2.4 programs per SM of K splits
SPLIT_X2 = (240, 64)  # 64-row tiles, up to 2.4 programs per SM


def resolve(gm, spec, M, N, K, device):
    """A configuration: None = the rule, (programs_pct, block_n) = ``decode_config``
    with those bounds (what the rule gives with those constants), else the tuple."""
    if spec is None:
        return gm.gemm_config(M, N, K, device)
    if spec[0] != "swap":
        return gm.decode_config(M, N, K, gm._sm_count(device), *spec)
    return spec


# (name, M, K, N, gated, [(label, configuration spec, options)]), all in PACKAGE_MODE
def gemm_grid(quick):
    base = [("rule", None, NEW), ("rule, no prefetch", None, NO_PREFETCH)]
    diagnostic = [("rule, imprecise acc 128", None, {"imprecise": 128})]
    up = base + [("bn32", BN32, NEW)] + diagnostic
    down = base + [("bn32 x2 splits", BN32_X2, NEW), ("split x2", SPLIT_X2, NEW)] + diagnostic
    grid = [
        ("decoder down", 10, 4096, 1024, False, down),
        ("decoder up", 10, 1024, 4096, False, up),
        ("decoder gate_up (GeGLU)", 10, 1024, 8192, True, up[:3]),
        ("encoder down", 16, 16384, 2048, False, base + [("rule, prefetch", None, PREFETCH)]),
        ("SigLIP down", 16, 4304, 1152, False, base),
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
    for name, M, K, N, gated, variants in gemm_grid(quick):
        if time.time() - START > budget:
            log(f"  {name}: skipped (time budget)")
            continue
        H = N // 2 if gated else N
        sets = []
        for i in range(rotation_sets(N * K + 2 * 16 * N)):
            g = torch.Generator(device="cuda").manual_seed(i)
            sets.append(fp8_weight(N, K, g))
        g = torch.Generator(device="cuda").manual_seed(100 + M)
        x = q8(torch.randn((M, K), generator=g, device="cuda"), torch.tensor(1 / 16.0))
        sx = torch.tensor([1 / 16.0], device="cuda")
        so = torch.tensor([1 / 64.0], device="cuda")
        c = torch.empty(M, N, dtype=BF16, device="cuda")
        q = torch.empty(M, H, dtype=FP8, device="cuda")
        xp = torch.zeros((pad16(M), K), device="cuda").to(FP8)
        xp[:M] = x
        lib = graph_us(lambda s: scaled_mm(xp if pad else x, s[0], sx, s[1]), sets)
        for label, spec, options in variants:
            if time.time() - START > budget:
                log(f"  {name} {label}: skipped (time budget)")
                continue
            cfg = resolve(gm, spec, M, N, K, x.device)

            pdl, prefetch, early = MODE_ARGS[PACKAGE_MODE]
            opts = {"prefetch": prefetch, "early_release": early, **options}

            def run(s, cfg=cfg, opts=opts):
                gm.launch_with_config(cfg, pdl, x, s[0], sx, s[1], c, so=so, q=q,
                                      act=2 if gated else 0, **opts)
                return c
            try:
                got = run(sets[0]).clone()
                v = compare("gemm", got, eager_gemm(x, sets[0][0], sx, sets[0][1]),
                            **BENCH_TOL["gemm"])
                us = graph_us(run, sets) if v.ok else None
            except Exception as e:  # a configuration that does not compile is reported
                v, us = None, None
                log(f"  {name} {label}: ERROR {type(e).__name__}: {str(e)[:200]}")
            ROWS.append({"kind": "gemm", "shape": name, "M": M, "K": K, "N": N, "label": label,
                         "cfg": list(cfg), "options": options, "pdl_mode": PACKAGE_MODE,
                         "us": us, "scaled_mm_us": lib, "ok": bool(v and v.ok),
                         "check": v.message if v else "error"})
            if us:
                log(f"  {name[:15]:15s} M={M:<2d} bn{cfg[2]:<3d} bk{cfg[3]:<4d} split{cfg[4]:<2d} "
                    f"{label:24s} {us:6.2f} us  x_scaled_mm {lib / us:4.2f} ({lib:.2f})")
            elif v is not None:
                log(f"  {name} {label}: REJECT {v.message}")
        del sets
        torch.cuda.empty_cache()


# (label, up spec, down spec, up options, down options) of whole-stack candidates (M = 10)
STACK_CANDIDATES = [
    ("bn32 up + down x2 splits", BN32, BN32_X2, NEW, NEW),
    ("bn32 up", BN32, None, NEW, NEW),
    ("bn32 down x2 splits", None, BN32_X2, NEW, NEW),
    ("down split x2", None, SPLIT_X2, NEW, NEW),
    ("down without prefetch", None, None, NEW, NO_PREFETCH),
    # 8 warps per program (two warp groups on one tile; 2026-12-02 evening, against the
    # 64-row up rule of that time)
    ("up w8", ("swap", 16, 64, 256, 1, 1024, 8, 4), None, NEW, NEW),
    ("down w8", None, ("swap", 16, 64, 128, 8, 512, 8, 4), NEW, NEW),
    ("up w8 + down w8", ("swap", 16, 64, 256, 1, 1024, 8, 4),
     ("swap", 16, 64, 128, 8, 512, 8, 4), NEW, NEW),
    ("up bn32 w8", ("swap", 16, 32, 256, 1, 1024, 8, 4), None, NEW, NEW),
    ("up w8 s2", ("swap", 16, 64, 256, 1, 1024, 8, 2), None, NEW, NEW),
    ("up w8 + down w8 bk256", ("swap", 16, 64, 256, 1, 1024, 8, 4),
     ("swap", 16, 64, 256, 8, 512, 8, 4), NEW, NEW),
]


class Stack:
    """One decoder stack: layers, inputs, the package call and explicit launches."""

    def __init__(self, name, gm, layers, inputs, package_layer, eager_layer, library_layer,
                 up, down, dims):
        self.name, self.gm, self.layers, self.inputs = name, gm, layers, inputs
        self.package_layer, self.eager_layer, self.library_layer = (package_layer, eager_layer,
                                                                    library_layer)
        self.up, self.down = up, down  # (layer, bufs, cfg, pdl, launch options) -> None
        self.M, self.K, self.H_cols, self.H, self.N = dims

    def buffers(self):
        M, K, H_cols, H, N = self.M, self.K, self.H_cols, self.H, self.N
        return [(torch.empty(M, K, dtype=FP8, device="cuda"),
                 torch.empty(M, H_cols, dtype=BF16, device="cuda"),
                 torch.empty(M, H, dtype=FP8, device="cuda"),
                 torch.empty(M, N, dtype=BF16, device="cuda")) for _ in self.layers]

    def package(self):
        bufs = self.buffers()
        return (lambda i, x: self.package_layer(x, self.layers[i], bufs[i])), bufs

    def launches(self, up_spec=None, down_spec=None, up_options=NEW, down_options=NEW,
                 mode=PACKAGE_MODE):
        """Two launches per layer (quantize fused in the up GEMM) with these configurations,
        options and launch mode."""
        gm, device, bufs = self.gm, self.inputs[0].device, self.buffers()
        up = resolve(gm, up_spec, self.M, self.H_cols, self.K, device)
        down = resolve(gm, down_spec, self.M, self.N, self.H, device)
        pdl, prefetch, early = MODE_ARGS[mode]
        up_opts = {"prefetch": prefetch, "early_release": early, **up_options}
        down_opts = {"prefetch": prefetch, "early_release": early, **down_options}

        def layer(i, x):
            self.up(self.layers[i], bufs[i], up, pdl, dict(up_opts, x=x))
            self.down(self.layers[i], bufs[i], down, pdl, down_opts)
            return bufs[i][3]
        return layer, bufs

    def three_launches(self):
        """Quantize kernel + up + down, no PDL (the design before the fused quantize)."""
        gm, device, bufs = self.gm, self.inputs[0].device, self.buffers()
        up = gm.gemm_config(self.M, self.H_cols, self.K, device)
        down = gm.gemm_config(self.M, self.N, self.H, device)

        def layer(i, x):
            L, b = self.layers[i], bufs[i]
            _quantize_no_pdl(gm, x, L["input_scale"], b[0])
            self.up(L, b, up, False, {})
            self.down(L, b, down, False, {})
            return b[3]
        return layer, bufs


def _calibrated(layers, inputs, up_fn):
    """Static scales from each layer's own input: input amax, hidden activation amax."""
    for L, x in zip(layers, inputs):
        L["input_scale"] = (x.float().abs().amax() / (0.9 * 448)).reshape(1)
        L["hidden_scale"] = (up_fn(q8(x, L["input_scale"]), L).abs().amax()
                             / (0.9 * 448)).reshape(1)


def _quantize_no_pdl(gm, x, s, xq):
    M, K = x.shape
    gm._quantize_input_kernel[(M, -(-K // 1024))](x, s, xq, M, M, K, BLOCK_R=1, BLOCK_K=1024,
                                                  num_warps=4)


def _inputs(make_layer, M, K, n_layers):
    g = torch.Generator(device="cuda").manual_seed(0)
    layers = [make_layer(g) for _ in range(n_layers)]
    return layers, [torch.randn((M, K), generator=g, device="cuda").to(BF16) for _ in layers]


def gelu_stack(gm, M, K=1024, H=4096, N=1024, n_layers=18):
    """PI0.5 decoder GELU FFN: bf16_fp8_gelu_mlp_bf16 (flashrt-fp8-ffn)."""
    import torch.nn.functional as F
    from bench_fp8_ffn import _eager_layer, _layer_weights, _library_layer
    kernel = load_built(Package("flashrt-fp8-ffn"))
    layers, inputs = _inputs(lambda g: _layer_weights(K, H, N, g), M, K, n_layers)
    _calibrated(layers, inputs, lambda xq, L: F.gelu(eager_gemm(
        xq, L["up_weight"], L["input_scale"], L["up_weight_scale"]).float()
        + L["up_bias"].float(), approximate="tanh"))

    def package_layer(x, L, bufs):
        return kernel.bf16_fp8_gelu_mlp_bf16(
            x, L["up_weight"], L["up_bias"], L["down_weight"], L["down_bias"],
            L["input_scale"], L["up_weight_scale"], L["hidden_scale"], L["down_weight_scale"],
            *bufs)

    def up(L, b, cfg, pdl, opts):
        gm.launch_with_config(cfg, pdl, b[0], L["up_weight"], L["input_scale"],
                              L["up_weight_scale"], b[1], bias=L["up_bias"],
                              so=L["hidden_scale"], q=b[2], epi=gm.EPI_GELU_QUANT, **opts)

    def down(L, b, cfg, pdl, opts):
        gm.launch_with_config(cfg, pdl, b[2], L["down_weight"], L["hidden_scale"],
                              L["down_weight_scale"], b[3], bias=L["down_bias"],
                              epi=gm.EPI_BIAS_ROUNDED, **opts)

    return Stack(f"GELU M={M},K={K},H={H},N={N},layers={n_layers}", gm, layers, inputs,
                 package_layer, _eager_layer, _library_layer, up, down, (M, K, H, H, N))


def geglu_stack(M, K=1024, H=4096, N=1024, n_layers=18):
    """PI0.5 decoder GeGLU FFN: bf16_fp8_geglu_mlp_bf16 (flashrt-fp8-swiglu-ffn)."""
    import functools
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "flashrt-fp8-swiglu-ffn"
                           / "benchmarks"))
    from bench_fp8_swiglu_ffn import _act_mul, _eager_layer, _layer_weights, _library_layer
    kernel = load_built(Package("flashrt-fp8-swiglu-ffn"))
    gm = importlib.import_module(kernel.__name__ + ".fp8_gemm")
    layers, inputs = _inputs(lambda g: _layer_weights(K, H, N, g), M, K, n_layers)
    _calibrated(layers, inputs, lambda xq, L: _act_mul(eager_gemm(
        xq, L["gate_up_weight"], L["input_scale"], L["gate_up_weight_scale"]), "geglu"))

    def package_layer(x, L, bufs):
        return kernel.bf16_fp8_geglu_mlp_bf16(
            x, L["gate_up_weight"], L["down_weight"], L["input_scale"],
            L["gate_up_weight_scale"], L["hidden_scale"], L["down_weight_scale"], *bufs)

    def up(L, b, cfg, pdl, opts):
        gm.launch_with_config(cfg, pdl, b[0], L["gate_up_weight"], L["input_scale"],
                              L["gate_up_weight_scale"], b[1], so=L["hidden_scale"], q=b[2],
                              act=gm.ACT_GELU, **opts)

    def down(L, b, cfg, pdl, opts):
        gm.launch_with_config(cfg, pdl, b[2], L["down_weight"], L["hidden_scale"],
                              L["down_weight_scale"], b[3], **opts)

    return Stack(f"GeGLU M={M},K={K},H={H},N={N},layers={n_layers}", gm, layers, inputs,
                 package_layer, functools.partial(_eager_layer, act="geglu"),
                 functools.partial(_library_layer, act="geglu"), up, down,
                 (M, K, 2 * H, H, N))


def _all_same(bufs_a, bufs_b):
    return all(same_bits(p, r) for a, b in zip(bufs_a, bufs_b) for p, r in zip(a, b))


def stack_row(st, candidates):
    """Verify and time one stack; returns a closure timing the compiled composition."""
    from flashrt_tools.bench.fp8_ffn import _compiled

    def stack(fn):
        return lambda _: [fn(i, x) for i, x in enumerate(st.inputs)]

    ours, ours_bufs = st.package()
    three, three_bufs = st.three_launches() if THREE_LAUNCHES[0] else (None, None)
    eager_out, failed = [], []
    for i, x in enumerate(st.inputs):
        got = ours(i, x)
        if three:
            three(i, x)
        eager_out.append([t.clone() for t in ours_bufs[i]])
        if not compare("gemm", got, st.eager_layer(x, st.layers[i]), **BENCH_TOL["gemm"]).ok:
            failed.append(i)
    row = {"kind": "stack", "shape": st.name, "failed_layers": failed}
    if three:
        row["three_launches_equal_ours"] = _all_same(three_bufs, ours_bufs)
    if failed:
        log(f"  {st.name}: REJECT layers {failed}")
        ROWS.append(row)
        return lambda: None
    row["ours_us"] = graph_us(stack(ours), [0], 4)
    row["graph_replay_equals_eager"] = _all_same(ours_bufs, eager_out)
    three_note = ""
    if three:
        row["three_launches_us"] = graph_us(stack(three), [0], 4)
        three_note = (f"  3 launches no PDL {row['three_launches_us']:.1f} (bits equal: "
                      f"{row['three_launches_equal_ours']})")
    row["library_eager_us"] = graph_us(stack(lambda i, x: st.library_layer(x, st.layers[i])),
                                       [0], 4)
    log(f"  {st.name}: ours {row['ours_us']:.1f} us{three_note}  _scaled_mm eager "
        f"{row['library_eager_us']:.1f}"
        f"  (graph replay == eager: {row['graph_replay_equals_eager']})")
    ROWS.append(row)
    for label, up_spec, down_spec, up_options, down_options in candidates:
        if time.time() - START > BUDGET[0]:
            log(f"  {st.name} {label}: skipped (time budget)")
            continue
        fn, _ = st.launches(up_spec, down_spec, up_options, down_options)
        bad = [i for i, x in enumerate(st.inputs) if not compare(
            "gemm", fn(i, x), st.eager_layer(x, st.layers[i]), **BENCH_TOL["gemm"]).ok]
        us = None if bad else graph_us(stack(fn), [0], 4)
        ROWS.append({"kind": "stack_candidate", "shape": st.name, "label": label, "us": us,
                     "failed_layers": bad})
        log(f"  {st.name} {label}: " + (f"{us:.1f} us (ours {row['ours_us']:.1f})" if us
                                        else f"REJECT layers {bad}"))

    def compiled_composition():
        """torch.compile of the _scaled_mm composition (slow to compile: run last)."""
        ref = lambda i, x: st.eager_layer(x, st.layers[i])  # noqa: E731
        lib, status = _compiled(st.library_layer, st.layers, st.inputs, ref, BENCH_TOL["gemm"])
        row["library_status"] = status
        if lib:
            row["library_us"] = graph_us(stack(lib), [0], 4)
            log(f"  {st.name}: _scaled_mm composition compiled {row['library_us']:.1f} us "
                f"-> ours x{row['library_us'] / row['ours_us']:.2f}  ({status})")
        else:
            log(f"  {st.name}: _scaled_mm composition compiled: {status}")
    return compiled_composition


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--budget", type=float, default=600.0,
                   help="seconds; rows that would start after it are skipped")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-gemm", action="store_true")
    p.add_argument("--probe", action="store_true", help="run the PDL probe first")
    p.add_argument("--no-three-launches", action="store_true",
                   help="skip the three-launch (quantize kernel, no PDL) stack rows")
    p.add_argument("--stacks", nargs="*", default=["gelu:10", "geglu:10"],
                   help="decoder stacks to time, KIND:M with KIND gelu or geglu")
    p.add_argument("--compiled", nargs="*", default=["gelu:10", "geglu:10"],
                   help="stacks also timed against the compiled _scaled_mm composition, "
                        "the first right after its stack, the others at the end")
    args = p.parse_args()
    BUDGET[0] = args.budget
    THREE_LAUNCHES[0] = not args.no_three_launches
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a timeout still writes the JSON
    torch.backends.cuda.matmul.allow_tf32 = False
    gm = importlib.import_module(load_built(Package("flashrt-fp8-ffn")).__name__ + ".fp8_gemm")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    log(f"{torch.cuda.get_device_name(0)}, {sms} SMs")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save():
        (out / "tune_fp8_decode.json").write_text(json.dumps(
            {"gpu": torch.cuda.get_device_name(0), "rows": ROWS}, indent=1))
    try:
        if args.probe:
            pdl_probe()
        later = []
        for stack in args.stacks:
            if time.time() - START > args.budget:
                log(f"  stack {stack}: skipped (time budget)")
                continue
            kind, M = stack.split(":")
            st = gelu_stack(gm, int(M)) if kind == "gelu" else geglu_stack(int(M))
            candidates = [] if int(M) != 10 else (
                STACK_CANDIDATES if kind == "gelu" else STACK_CANDIDATES[:1])
            compiled = stack_row(st, candidates)
            save()
            if stack in args.compiled[:1] and time.time() - START < args.budget - COMPILE_S:
                compiled()
                save()
            elif stack in args.compiled:
                later.append(compiled)
        if not args.no_gemm:
            gemm_rows(gm, args.budget, args.quick)
        for run in later:
            if time.time() - START < args.budget - COMPILE_S:
                run()
    finally:
        save()


if __name__ == "__main__":
    main()
