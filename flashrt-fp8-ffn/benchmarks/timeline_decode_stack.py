"""Kernel timeline of the PI0.5 decoder FFN stack under CUDA-graph replay.

Where the time of ``bf16_fp8_gelu_mlp_bf16`` x 18 layers (M = 10, 1024 -> 4096 -> 1024)
goes: one captured stack is replayed under ``torch.profiler`` (CUPTI traces the kernels
of a graph launch one by one), and every kernel's start, end, duration and the gap to
the previous kernel's end (negative: the kernel started before the previous one ended,
programmatic dependent launch) are written out, summarised per kernel name. Beside it
the same for the torch.compile'd ``torch._scaled_mm`` composition (the benchmark's
library baseline) and for stacks of the up GEMM alone and the down GEMM alone (distinct
weights per layer, as in the stack), which separate one GEMM's time from the
layer-to-layer hand-off.

Measured on H200 (2026-12-02 evening, 64-row up tiles then; ``--sweep``,
``results/nvidia-h200/tuning/flashrt-fp8-ffn/timeline_decode_stack.2026-12-02.json``):
the package stack 169.8 us, 36 kernels of ~9.0 us each starting ~4.4 us before the
previous one ends (PDL), so ~4.7 us of the chain per GEMM; the compiled composition
288.2 us (cuBLASLt GEMMs 3.95 / 5.50 us, three Triton epilogue kernels of 1.1-1.4 us,
~0.45 us gaps). Chains of one GEMM: up 91.9 us (one weight for every layer, L2-hot:
85.3; no PDL: 110.3; no prefetch: 101.4; PDL released after the K loop: 113.2; a 128-wide
accumulation interval: 89.8; 32-row tiles: 83.9; a 2-way K split: 91.9), down 89.1
(L2-hot 79.7; no PDL 109.3; no prefetch 96.7; late release 93.8; 128-wide interval 84.8;
32-row tiles 92.3; 16 splits 104.4). The weight stream is not what bounds the chain.

Run on a GPU: ``python3 flashrt-fp8-ffn/benchmarks/timeline_decode_stack.py --out DIR``
[``--sweep``] [``--M 10``]. Writes DIR/timeline_decode_stack.json; prints the per-kernel
summary.
"""

import argparse
import importlib
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tune_fp8_decode as tune  # noqa: E402
from flashrt_tools.bench.harness import capture_graph, environment, graph_us  # noqa: E402
from flashrt_tools.repo import Package  # noqa: E402
from flashrt_tools.validation import load_built  # noqa: E402

REPLAYS = 5


def timeline(fn):
    """Kernel events (name, start and end in µs from the first kernel) of the middle
    replay of REPLAYS graph replays of ``fn`` (already warm: timed by graph_us first)."""
    graph = capture_graph(fn)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(REPLAYS):
            graph.replay()
        torch.cuda.synchronize()
    events = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                     and e.time_range.elapsed_us() > 0 and "memcpy" not in e.name.lower()
                     and "memset" not in e.name.lower()),
                    key=lambda e: e.time_range.start)
    per = len(events) // REPLAYS
    mid = events[per * (REPLAYS // 2): per * (REPLAYS // 2 + 1)]
    if not mid:
        return []
    t0 = mid[0].time_range.start
    return [{"name": e.name[:80], "start": e.time_range.start - t0,
             "end": e.time_range.end - t0} for e in mid]


def summary(events):
    """Per kernel name: count, median duration, median gap to the previous kernel's end;
    the span from the first start to the last end."""
    by = {}
    prev_end = None
    for e in events:
        d = by.setdefault(e["name"], {"count": 0, "dur": [], "gap": []})
        d["count"] += 1
        d["dur"].append(e["end"] - e["start"])
        if prev_end is not None:
            d["gap"].append(e["start"] - prev_end)
        prev_end = e["end"]
    out = {name: {"count": d["count"], "median_us": statistics.median(d["dur"]),
                  "median_gap_us": statistics.median(d["gap"]) if d["gap"] else None}
           for name, d in by.items()}
    span = (events[-1]["end"] - events[0]["start"]) if events else 0.0
    return {"kernels": out, "span_us": span, "n_kernels": len(events)}


def _sweep(gm, st, bufs, up_cfg, down_cfg):
    """Chains of one GEMM under other launch options (--sweep): which part of a GEMM's
    time in the chain is the weight stream (one weight for every layer: L2-hot), the
    PDL hand-off, the prefetch, the promoted accumulation (timing only: other numerics)
    and the grid."""
    dev = st.inputs[0].device
    up_split2 = ("swap", 16, 64, 256, 2, st.K // 2, 4, 4)  # 128 programs
    up_n32 = gm.decode_config(st.M, st.H_cols, st.K, gm._sm_count(dev), block_n=32)
    down_n32 = gm.decode_config(st.M, st.N, st.H, gm._sm_count(dev), block_n=32)
    down_x2 = ("swap", 16, 64, 128, 16, st.H // 16, 4, 4)  # 256 programs

    def chain(which, cfg, pdl=True, same_weight=False, **opts):
        def fn():
            for i, x in enumerate(st.inputs):
                L = st.layers[0 if same_weight else i]
                if which == "up":
                    st.up(L, bufs[i], cfg, pdl, dict(opts, x=x))
                else:
                    st.down(L, bufs[i], cfg, pdl, dict(opts))
        return fn

    out = {}
    for which, cfg in (("up", up_cfg), ("down", down_cfg)):
        out[f"{which}: one weight (L2-hot)"] = chain(which, cfg, same_weight=True)
        out[f"{which}: one weight, no PDL"] = chain(which, cfg, pdl=False, same_weight=True)
        out[f"{which}: no prefetch"] = chain(which, cfg, prefetch=False)
        out[f"{which}: no PDL"] = chain(which, cfg, pdl=False)
        out[f"{which}: PDL, late release"] = chain(which, cfg, early_release=False)
        out[f"{which}: accumulation interval 128 (timing only)"] = chain(which, cfg,
                                                                         imprecise=128)
    out[f"up: {up_split2}"] = chain("up", up_split2)
    out[f"up: {up_n32}"] = chain("up", up_n32)
    out[f"down: {down_n32}"] = chain("down", down_n32)
    out[f"down: {down_x2}"] = chain("down", down_x2)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--M", type=int, default=10)
    p.add_argument("--sweep", action="store_true", help="also chains of one GEMM under "
                   "other launch options")
    args = p.parse_args()
    gm = importlib.import_module(load_built(Package("flashrt-fp8-ffn")).__name__ + ".fp8_gemm")
    st = tune.gelu_stack(gm, args.M)
    layer, bufs = st.package()
    lib = torch.compile(st.library_layer)
    up_cfg = gm.gemm_config(st.M, st.H_cols, st.K, st.inputs[0].device)
    down_cfg = gm.gemm_config(st.M, st.N, st.H, st.inputs[0].device)

    def run(layer_fn):
        return lambda: [layer_fn(i, x) for i, x in enumerate(st.inputs)]

    def up_only(i, x):
        st.up(st.layers[i], bufs[i], up_cfg, True, {"x": x})

    def down_only(i, x):
        st.down(st.layers[i], bufs[i], down_cfg, True, {})

    variants = {"package": run(layer), "up GEMM only (PDL)": run(up_only),
                "down GEMM only (PDL)": run(down_only),
                "compiled _scaled_mm composition": run(lambda i, x: lib(x, st.layers[i]))}
    if args.sweep:
        variants.update(_sweep(gm, st, bufs, up_cfg, down_cfg))
    result = {"env": environment(), "stack": st.name, "up_cfg": up_cfg, "down_cfg": down_cfg,
              "variants": {}}
    for name, fn in variants.items():
        us = graph_us(lambda _: fn(), [0], 8)
        events = timeline(fn)
        s = summary(events)
        result["variants"][name] = {"graph_us": us, "summary": s, "events": events}
        print(f"{name}: graph replay {us:.1f} us, traced span {s['span_us']:.1f} us, "
              f"{s['n_kernels']} kernels", flush=True)
        for k, v in s["kernels"].items():
            gap = "-" if v["median_gap_us"] is None else f"{v['median_gap_us']:.2f}"
            print(f"    {v['count']:3d} x {v['median_us']:7.2f} us  gap {gap:>6s}  {k}",
                  flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "timeline_decode_stack.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
