"""Launch-rule sweep of flashrt-gemm-epilogues: the record of how its configurations were chosen.

GEMM (BF16 decode rows, M <= 16, b [K, N]) on the model K x N: PI0.5 decoder 1024 -> 4096
-> 1024, qkv 1024 -> 2560, o_proj 2048 -> 1024; encoder 2048 -> 16384 -> 2048, qkv
2048 -> 2560, o_proj 2048 -> 2048; SigLIP 1152 -> 4304 -> 1152; the spec's 1024 x 1024,
4096 x 4096, 4096 x 8192. Variants: the swap-AB kernel over BLOCK_N x BLOCK_K x SPLIT,
the launch rule's pick, the tile kernel's former M <= 16 configuration. Baselines
(cuBLAS): ``torch.mm`` / ``torch.addmm`` (+ tanh GELU) on the same [K, N] weight,
``F.linear`` on the nn.Linear [N, K] weight, ``torch._addmm_activation`` (cuBLASLt's
fused GELU_BIAS epilogue), and verified torch.compile of addmm + GELU. TF32 and
reduced-precision reductions off; distinct weights per input set.

Quantizers: ``_quantize_kernel`` launch configs (BLOCK_R, BLOCK_N, warps) against the
launch rule (the former rule was 4096 elements per program at 8 warps, (4, 1024, 8) at
N >= 1024), a same-size device copy and verified torch.compile of the reference.

Every timed path is verified first (GEMMs: p99 |err| <= 2^-7 against the exact
product for ours, 2^-5 for cuBLAS; ours bit-identical over two calls; quantizers:
FP8 byte parity, at most 0.1% one-step codes). Timing: CUDA-graph replay over
L2-rotated input sets (harness.graph_us). ``--budget`` seconds bound the run: each
part stops at its share and says so; JSON is written after each part. Without a GPU
the script runs as a smoke test (interpreter, tiny shapes, no timing).

Usage: python3 tune_epilogues.py --out DIR [--part sweep,gemm,quant,compile] [--budget 80]
(sweep: the GEMM variant grid at M = 10; gemm: the launch rule against cuBLAS at M = 1
and 16, every epilogue; quant: quantizer configs; compile: torch.compile baselines)
"""

import time

T0 = time.time()

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from flashrt_tools.validation import ensure_interpreter_if_cpu  # noqa: E402

ON_CPU = ensure_interpreter_if_cpu()  # no GPU: a smoke run (interpreter, tiny shapes, no timing)

from flashrt_tools.bench.harness import graph_us, rotation_sets, same_size_copy_us  # noqa: E402
from flashrt_tools.repo import Package  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built, reference_of  # noqa: E402

BF16, FP8 = torch.bfloat16, torch.float8_e4m3fn

GEMM_SHAPES = [  # (label, K, N)
    ("pi05 up", 1024, 4096), ("pi05 down", 4096, 1024), ("pi05 qkv", 1024, 2560),
    ("pi05 o_proj", 2048, 1024), ("enc up", 2048, 16384), ("enc down", 16384, 2048),
    ("siglip up", 1152, 4304), ("siglip down", 4304, 1152), ("decode", 1024, 1024),
    ("bench", 4096, 4096), ("bench", 4096, 8192), ("enc qkv", 2048, 2560),
    ("enc o_proj", 2048, 2048),
]
CPU_GEMM_SHAPES = [("smoke", 640, 96), ("smoke", 1000, 40)]  # smoke run without a GPU
GEMM_SWEEP_M = 10
GEMM_CHECK_M = (1, 16)
BLOCK_NS = (16, 32, 64)
BLOCK_KS = (64, 128, 256)
SPLITS = (1, 2, 4, 8, 16)

QUANT_SHAPES = [(1, 4096), (8, 4096), (16, 4096), (64, 4096), (256, 4096), (1024, 4096),
                (2048, 4096), (16, 8192), (64, 12288), (16, 16384), (64, 16384), (8192, 4096),
                (4096, 16384)]
# (BLOCK_R, BLOCK_N, warps); None: the launch rule. Also measured on H200 and dropped:
# 2048 columns at 8 warps, 8 and 16 rows per program (slower or equal everywhere), and an
# evict_first hint on the input load (faster only where one pass over the rotated sets
# about fills L2, 64 x 4096 and 16 x 16384; 12% slower at 16 x 8192 and 3-4% from
# 1024 x 4096 channel-scale).
QUANT_CONFIGS = [(1, 256, 1), (1, 512, 2), (1, 1024, 4), (2, 1024, 4), (4, 1024, 4),
                 (4, 1024, 8)]
QUANT_COMPILE_SHAPES = [  # (function, M, N), most telling first
    ("channel_scale_quantize_fp8_static_bf16", 64, 4096),
    ("bias_gelu_quantize_fp8_static_bf16", 1, 4096),
    ("channel_scale_quantize_fp8_static_bf16", 1, 4096),
    ("bias_gelu_quantize_fp8_static_bf16", 64, 4096),
    ("gelu_quantize_fp8_static_bf16", 64, 4096),
    ("channel_scale_quantize_fp8_static_bf16", 256, 4096),
    ("channel_scale_quantize_fp8_static_bf16", 64, 16384),
    ("bias_gelu_quantize_fp8_static_bf16", 16, 4096),
    ("channel_scale_quantize_fp8_static_bf16", 16, 8192),
    ("bias_gelu_quantize_fp8_static_bf16", 64, 12288),
    ("channel_scale_quantize_fp8_static_bf16", 8192, 4096),
    ("bias_gelu_quantize_fp8_static_bf16", 8192, 4096),
]
QUANT_MODES = {"bias_gelu_quantize_fp8_static_bf16": 0, "channel_scale_quantize_fp8_static_bf16": 2}


PART_SHARE = {"gemm_part": 0.35, "gemm_rule_check": 0.15, "gemm_compile_part": 0.12,
              "quant_part": 0.16, "quant_compile_part": 0.22}  # of --budget, selected parts
PART_END = {}
_PART = ["gemm_part"]


def left():
    """Seconds left to the current part."""
    return PART_END[_PART[0]] - (time.time() - T0)


def log(*a):
    print(*a, flush=True)


def timed(call, sets):
    """GPU us per call: harness.graph_us (CUDA-graph replay, captured on a fresh stream;
    captured split-K calls take arrival counters zeroed before capture)."""
    if ON_CPU:
        call(sets[0])
        return 0.0
    return graph_us(call, sets)


def precompile(modules, launches):
    """Compile the Triton variants of ``launches`` in parallel: each launch runs once with
    the package's kernels swapped for warm-up proxies inside Triton's AsyncCompileMode."""
    if ON_CPU:
        return
    from triton.runtime._async_compile import AsyncCompileMode

    class Warmup:
        def __init__(self, fn):
            self.fn = fn

        def __getitem__(self, grid):
            return lambda *a, **kw: self.fn.warmup(*a, grid=grid, **kw)

    names = {m: [n for n in dir(m) if n.startswith("_") and n.endswith("_kernel")]
             for m in modules}
    saved = {(m, n): getattr(m, n) for m, ns in names.items() for n in ns}
    t = time.time()
    try:
        for (m, n), fn in saved.items():
            setattr(m, n, Warmup(fn))
        with concurrent.futures.ThreadPoolExecutor(16) as pool, AsyncCompileMode(pool):
            for launch in launches:
                launch()
    except Exception as e:  # noqa: BLE001 - fall back to compiling on first launch
        log(f"  precompile fell back to lazy compile: {type(e).__name__}: {str(e)[:100]}")
    finally:
        for (m, n), fn in saved.items():
            setattr(m, n, fn)
    log(f"  precompiled {len(launches)} launches in {time.time() - t:.1f} s")


# ----------------------------------------------------------------------------
# GEMM
# ----------------------------------------------------------------------------


def gemm_sets(M, K, N, device, n=None):
    nbytes = 2 * (M * K + K * N + M * N)
    n = n or (1 if ON_CPU else rotation_sets(nbytes))
    g = torch.Generator(device=device).manual_seed(0)
    sets = []
    for _ in range(n):
        a = (torch.randn(M, K, generator=g, device=device) * 2).to(BF16)
        b = (torch.randn(K, N, generator=g, device=device) / math.sqrt(K)).to(BF16)
        bias = (torch.randn(N, generator=g, device=device) * 0.5).to(BF16)
        sets.append({"a": a, "b": b, "bt": b.t().contiguous(), "bias": bias,
                     "out": torch.empty(M, N, dtype=BF16, device=device)})
    return sets


def exact(s, epi, ref):
    fn = {0: "bf16_linear_bf16", 1: "bf16_gemm_bias", 2: "bf16_gemm_bias_gelu"}[epi]
    return getattr(ref, fn)(*([s["a"], s["b"]] + ([s["bias"]] if epi else [])))


def cublas_paths(epi):
    """The library paths a user would write for ``epi`` on the [K, N] and [N, K] weights."""
    act = (lambda y: F.gelu(y, approximate="tanh")) if epi == 2 else (lambda y: y)
    if epi == 0:
        return {"mm": lambda s: torch.mm(s["a"], s["b"], out=s["out"]),
                "F.linear": lambda s: F.linear(s["a"], s["bt"])}
    paths = {"addmm": lambda s: act(torch.addmm(s["bias"], s["a"], s["b"])),
             "F.linear": lambda s: act(F.linear(s["a"], s["bt"], s["bias"]))}
    if epi == 2:  # cuBLASLt's fused GELU_BIAS epilogue (tanh GELU), one kernel
        paths["addmm_activation"] = lambda s: torch._addmm_activation(s["bias"], s["a"], s["b"],
                                                                       use_gelu=True)
    return paths


def swap_cfg(K, bn, bk, split):
    steps = -(-K // bk)
    return ("swap", 16, bn, bk, split, -(-steps // split) * bk, 4, 4)


def cfg_name(cfg):
    if cfg[0] == "swap":
        return f"swap bn{cfg[2]} bk{cfg[3]} s{cfg[4]}" + (f" st{cfg[7]}" if cfg[7] != 4 else "")
    return "tile bm{} bn{} bk{}".format(*cfg[1:4])


def former_tile_cfg(M, N, sms):
    """The tile kernel's configuration for M <= 16 before the swap kernel."""
    bn = 128
    while bn > 16 and -(-N // bn) < sms:
        bn //= 2
    return ("tile", 16, bn, 64, 8, 4, 4)


def poisoned_call(call, s):
    """call(s) into a NaN-poisoned out; a copy of what it wrote."""
    s["out"].fill_(float("nan"))
    call(s)
    return s["out"].clone()


def check(got, want, tol):
    v = compare("gemm", got, want, p99_abs=tol)
    return v.ok, v.message


def gemm_part(kernel, gemm, ref, device, rows):
    sms = gemm._sm_count(device)
    shapes = CPU_GEMM_SHAPES if ON_CPU else GEMM_SHAPES
    variants = {}
    for label, K, N in shapes:
        vs = {}
        for bn in BLOCK_NS:
            tiles = -(-N // bn)
            for bk in BLOCK_KS if bn == 64 else BLOCK_KS[1:]:  # 64-wide K steps: 64 columns
                for sp in SPLITS:
                    if sp == 1 or (sp * 2 <= -(-K // bk) and tiles * sp <= 2 * sms):
                        vs[f"swap bn{bn} bk{bk} s{sp}"] = swap_cfg(K, bn, bk, sp)
        vs["former tile"] = former_tile_cfg(GEMM_SWEEP_M, N, sms)
        rule = gemm.gemm_config(GEMM_SWEEP_M, N, K, device)
        vs.setdefault(cfg_name(rule), rule)
        variants[(K, N)] = vs
    # compile everything first (parallel), EPI_NONE sweep + the rule's pick for every EPI
    dummy = {}
    for label, K, N in shapes:
        dummy[(K, N)] = gemm_sets(1, K, N, device, n=1)[0]
    launches = []
    for (K, N), vs in variants.items():
        s = dummy[(K, N)]
        for cfg in vs.values():
            launches.append(lambda s=s, cfg=cfg: gemm.launch_bf16_gemm(
                s["a"], s["b"], None, s["out"], 0, cfg))
        for epi in (1, 2):
            launches.append(lambda s=s, epi=epi: gemm.launch_bf16_gemm(
                s["a"], s["b"], s["bias"], s["out"], epi))
    precompile([gemm], launches)
    for label, K, N in shapes:
        if left() < 3:
            log(f"  gemm: budget left {left():.0f} s, stopping before {label} {K}x{N}")
            break
        M = GEMM_SWEEP_M
        sets = gemm_sets(M, K, N, device)
        want = exact(sets[0], 0, ref)
        res = {}
        for name, cfg in variants[(K, N)].items():
            def call(s, cfg=cfg):
                return gemm.launch_bf16_gemm(s["a"], s["b"], None, s["out"], 0, cfg)
            try:
                got = [poisoned_call(call, sets[0]) for _ in range(2)]
            except Exception as e:  # noqa: BLE001 - e.g. too much shared memory: not a candidate
                log(f"  SKIP {name} {K}x{N}: {type(e).__name__}: {str(e)[:80]}")
                continue
            ok, msg = check(got[0], want, 2.0 ** -7)
            if not (ok and torch.equal(got[0].view(torch.int16), got[1].view(torch.int16))):
                log(f"  REJECT {name} {K}x{N}: {msg} / deterministic?")
                continue
            res[name] = timed(call, sets)
        rule = gemm.gemm_config(M, N, K, device)
        for name, fn in cublas_paths(0).items():
            res[name] = timed(fn, sets) if check(fn(sets[0]), want, 2.0 ** -5)[0] else None
        swaps = {k: v for k, v in res.items() if k.startswith("swap")}
        best = min(swaps, key=swaps.get)
        rows.append({"part": "gemm", "label": label, "M": M, "K": K, "N": N, "us": res,
                     "rule": list(rule), "best": best})
        per_bn = " ".join(f"bn{bn} {min(v for k, v in swaps.items() if f'bn{bn} ' in k):.2f}"
                          for bn in BLOCK_NS)
        log(f"  {label:11s} {K:5d}x{N:<5d} best {best[5:]} {res[best]:.2f} ({per_bn}) | rule "
            f"{cfg_name(rule)[5:]} {res.get(cfg_name(rule), 0):.2f} | former "
            f"{res.get('former tile', 0):.2f} | mm {res.get('mm') or 0:.2f} "
            f"F.linear {res.get('F.linear') or 0:.2f}")
        del sets
    return rows


def gemm_rule_check(kernel, gemm, ref, device, rows):
    """The public functions (launch rule) against cuBLAS at M = 1 / 16, every epilogue."""
    fns = {0: "bf16_linear_bf16", 1: "bf16_gemm_bias", 2: "bf16_gemm_bias_gelu"}
    shapes = CPU_GEMM_SHAPES if ON_CPU else GEMM_SHAPES
    launches = []
    for label, K, N in shapes:
        s = gemm_sets(1, K, N, device, n=1)[0]
        for epi in fns:
            launches.append(lambda s=s, epi=epi: gemm.launch_bf16_gemm(
                s["a"], s["b"], s["bias"] if epi else None, s["out"], epi))
    precompile([gemm], launches)
    for label, K, N in shapes:
        line = []
        for M in GEMM_CHECK_M:
            if left() < 2:
                log("  gemm rule check: budget exhausted")
                return rows
            sets = gemm_sets(M, K, N, device)
            for epi, fn in fns.items():
                want = exact(sets[0], epi, ref)
                args = ("a", "b") + (("bias",) if epi else ())

                def ours(s, fn=fn, args=args):
                    return getattr(kernel, fn)(*[s[k] for k in args], out=s["out"])
                ok, msg = check(poisoned_call(ours, sets[0]), want, 2.0 ** -7)
                if not ok:
                    log(f"  REJECT {fn} {M}x{K}x{N}: {msg}")
                    continue
                res = {"ours": timed(ours, sets)}
                for name, lib in cublas_paths(epi).items():
                    ok = check(lib(sets[0]), want, 2.0 ** -5)[0]
                    res[name] = timed(lib, sets) if ok else None
                rows.append({"part": "gemm_rule", "label": label, "fn": fn, "M": M, "K": K,
                             "N": N, "us": res})
                lib_best = min(v for k, v in res.items() if k != "ours" and v is not None)
                line.append(f"{res['ours']:.2f}/{lib_best:.2f}")
            del sets
        log(f"  {label:11s} {K:5d}x{N:<5d} M=1|16 none,bias,gelu ours/cuBLAS: "
            + " ".join(line[:3]) + " | " + " ".join(line[3:]))
    return rows


def gemm_compile_part(kernel, gemm, ref, device, rows):
    """Verified torch.compile (default mode, dynamic=False) of addmm + tanh GELU."""
    for label, K, N in ([] if ON_CPU else GEMM_SHAPES[:2]):
        if left() < 4:
            log("  gemm compile: budget exhausted")
            return rows
        sets = gemm_sets(GEMM_SWEEP_M, K, N, device)
        want = exact(sets[0], 2, ref)

        def eager(s):
            return F.gelu(torch.addmm(s["bias"], s["a"], s["b"]), approximate="tanh")
        torch._dynamo.reset()
        compiled = torch.compile(eager, dynamic=False)
        ok = check(compiled(sets[0]), want, 2.0 ** -5)[0]
        res = {"compile": timed(compiled, sets) if ok else None,
               "ours": timed(lambda s: kernel.bf16_gemm_bias_gelu(s["a"], s["b"], s["bias"],
                                                                   out=s["out"]), sets)}
        rows.append({"part": "gemm_compile", "label": label, "M": GEMM_SWEEP_M, "K": K, "N": N,
                     "us": res})
        log(f"  compile addmm+gelu {label} M={GEMM_SWEEP_M}: {res['compile'] or 0:.2f} "
            f"(verified {ok}) ours {res['ours']:.2f}")
    return rows


# ----------------------------------------------------------------------------
# Quantizers
# ----------------------------------------------------------------------------


def quant_sets(fn, M, N, device, n=None):
    nbytes = 3 * M * N + 2 * N
    n = n or (1 if ON_CPU else rotation_sets(nbytes))
    g = torch.Generator(device=device).manual_seed(0)
    sets = []
    for _ in range(n):
        x = (torch.randn(M, N, generator=g, device=device) * 2).to(BF16)
        kw = {"input": x}
        if fn.startswith("bias_gelu"):
            kw["bias"] = (torch.randn(N, generator=g, device=device) * 0.5).to(BF16)
        elif fn.startswith("channel"):
            kw["channel_scale"] = torch.randn(N, generator=g, device=device).to(BF16)
        amax = x.float().abs().amax() * (4.0 if "channel" in fn else 1.5)
        kw["scale"] = (amax / (0.9 * 448)).reshape(1).float()
        sets.append((kw, torch.empty(M, N, dtype=FP8, device=device)))
    return sets, nbytes


def quant_part(kernel, epi, ref, device, rows):
    shapes = [(3, 1000)] if ON_CPU else QUANT_SHAPES
    launches = []
    for fn, mode in QUANT_MODES.items():
        sets, _ = quant_sets(fn, 4, 4096, device, n=1)
        kw, out = sets[0]
        vec = kw.get("bias", kw.get("channel_scale"))
        for cfg in QUANT_CONFIGS + [None]:
            launches.append(lambda kw=kw, out=out, vec=vec, mode=mode, cfg=cfg:
                            epi._launch_quantize(kw["input"], vec, kw["scale"], out, mode, cfg))
    precompile([epi], launches)
    for M, N in shapes:
        line = []
        for fn, mode in QUANT_MODES.items():
            if left() < 1:
                log(f"  quant: budget left {left():.0f} s, stopping before {fn} {M}x{N}")
                return rows
            sets, nbytes = quant_sets(fn, M, N, device)
            want = getattr(ref, fn)(**sets[0][0])
            res = {}
            for cfg in QUANT_CONFIGS + [None]:
                def call(s, cfg=cfg):
                    kw, out = s
                    vec = kw.get("bias", kw.get("channel_scale"))
                    return epi._launch_quantize(kw["input"], vec, kw["scale"], out, mode, cfg)
                sets[0][1].view(torch.uint8).fill_(0x7F)  # NaN codes
                call(sets[0])
                v = compare("fp8", sets[0][1], want)
                name = "rule" if cfg is None else "r{}xn{}w{}".format(*cfg)
                if not v.ok:
                    log(f"  REJECT {fn} {M}x{N} {name}: {v.message}")
                    continue
                res[name] = timed(call, sets)
            copy = 0.0 if ON_CPU else same_size_copy_us(nbytes, len(sets))
            best = min((k for k in res if k != "rule"), key=res.get)
            rows.append({"part": "quant", "fn": fn, "M": M, "N": N, "us": res, "copy_us": copy,
                         "rule": list(epi.quantize_config(M, N)), "best": best})
            line.append(f"{fn[:4]}: best {best} {res[best]:.2f} rule {res.get('rule', 0):.2f} "
                        f"copy {copy:.2f}")
            del sets
        log(f"  {M:5d}x{N:<5d} " + " | ".join(line))
    return rows


def quant_compile_part(kernel, ref, device, rows):
    """Verified torch.compile (default mode, dynamic=False) of the reference."""
    for fn, M, N in QUANT_COMPILE_SHAPES:
        if left() < 3:
            log("  compile: budget exhausted")
            return rows
        sets, _ = quant_sets(fn, M, N, device)

        def eager(s, fn=fn):
            return getattr(ref, fn)(**s[0])
        torch._dynamo.reset()
        compiled = torch.compile(eager, dynamic=False)
        v = compare("fp8", compiled(sets[0]), eager(sets[0]))
        us = timed(compiled, sets) if v.ok else None
        ours = timed(lambda s, fn=fn: getattr(kernel, fn)(**s[0], out=s[1]), sets)
        rows.append({"part": "quant_compile", "fn": fn, "M": M, "N": N,
                     "compile_us": us, "ours_us": ours, "verified": v.ok})
        log(f"  compile {fn[:13]:13s} {M:5d}x{N:<5d} {us or 0:6.2f} (verified {v.ok}) "
            f"ours {ours:6.2f}")
    return rows


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--part", default="sweep,gemm,quant,compile")
    p.add_argument("--budget", type=float, default=80.0)
    ARGS = p.parse_args()
    out = Path(ARGS.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu" if ON_CPU else "cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    kernel = load_built(Package("flashrt-gemm-epilogues"))
    gemm = importlib.import_module(kernel.__name__ + ".bf16_gemm")
    epi = importlib.import_module(kernel.__name__ + ".epilogues")
    ref = reference_of(kernel)
    env = {"gpu": "cpu (interpreter)" if ON_CPU else torch.cuda.get_device_name(0),
           "sm_count": gemm._sm_count(device)}
    log(f"tune_epilogues on {env['gpu']} ({env['sm_count']} SMs), setup {time.time() - T0:.1f} s")
    rows = []
    parts = ARGS.part.split(",")
    steps = [("sweep", gemm_part, (kernel, gemm, ref)),
             ("gemm", gemm_rule_check, (kernel, gemm, ref)),
             ("compile", gemm_compile_part, (kernel, gemm, ref)),
             ("quant", quant_part, (kernel, epi, ref)),
             ("compile", quant_compile_part, (kernel, ref))]
    steps = [st for st in steps if st[0] in parts]
    total = sum(PART_SHARE[fn.__name__] for _, fn, _ in steps)
    end = time.time() - T0
    remaining = ARGS.budget - end
    for _, fn, _ in steps:  # each part stops at its share of the time left after setup
        end += remaining * PART_SHARE[fn.__name__] / total
        PART_END[fn.__name__] = end
    for part, fn, args in steps:
        _PART[0] = fn.__name__
        log(f"[{fn.__name__}] t={time.time() - T0:.0f} s")
        fn(*args, device, rows)
        (out / "tune_epilogues.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    log(f"done in {time.time() - T0:.0f} s")


if __name__ == "__main__":
    main()
