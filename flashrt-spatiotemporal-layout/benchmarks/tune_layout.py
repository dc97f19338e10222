"""Launch-configuration sweep of flashrt-spatiotemporal-layout on the model shapes of
bench_layout.py: how the tile shapes and warp counts of ``layout.py`` were chosen.

For each op and shape, every candidate configuration (passed to the op's launcher
as ``config``; ``None`` entries keep the analytical default) is verified bit for
bit against reference.py on the first input set, then timed with the harness
(CUDA-graph replay over L2-rotated input sets), beside eager reference.py,
torch.compile of it (verified first) and a device copy of the same bytes.
Byte model as in bench_layout.py (every input read once, every output written once).

Run on a GPU: ``python3 flashrt-spatiotemporal-layout/benchmarks/tune_layout.py --out DIR
[--ops c2s,pool,...] [--budget SECONDS]``; writes DIR/tune_layout.json and prints one
line per candidate. Ops are measured in priority order until the time budget is spent.
"""

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench import harness  # noqa: E402
from flashrt_tools.repo import ROOT, Package, load_file  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built, reference_of  # noqa: E402

cases = load_file(ROOT / "flashrt-spatiotemporal-layout" / "tests" / "cases.py",
                  "_flashrt_cases_flashrt_spatiotemporal_layout")
BF16 = torch.bfloat16
DEV = torch.device("cuda")


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _bf(*shape):
    return torch.empty(shape, dtype=BF16, device=DEV)


def _x(shape, g, scale=2.0):
    return cases.randn(shape, g, DEV, scale)


def _specs(L, R):
    """name -> (shape label, make(gen) -> set, ours(set, config), reference(set), bytes,
    [candidate configs]). The first candidate is the launcher's default (None)."""
    F, C96 = (1, 96, 21, 60, 104), 96
    specs = {}

    xs, os_ = (1, 384, 5, 60, 104), (1, 96, 10, 120, 208)
    specs["c2s"] = (
        "channel_to_space3d_bf16 1x384x5x60x104,Co=96,tf=2,sf=2,r=2",
        lambda g: (_x(xs, g), _bf(*os_)),
        lambda st, c: L._channel_to_space3d(st[0], st[1], 96, 2, 2, 2, False, config=c),
        lambda st: R.channel_to_space3d_bf16(st[0], 96, 2, 2, 2, False),
        2 * _numel(xs) + 2 * _numel(os_),
        # (BR, BW, num_warps, INTERLEAVE)
        [None, (None, None, None, False), (32, 128, 8, True), (8, 128, 2, True),
         (16, 128, 8, True), (64, 16, 4, True), (32, 32, 4, True)])

    po = (1, 96, 11, 30, 52)
    specs["pool"] = (
        "avg_pool3d_channels_bf16 1x96x21x60x104,ft=2,fs=2,g=8",
        lambda g: (_x(F, g), _bf(*po)),
        lambda st, c: L._avg_pool3d_channels(st[0], st[1], C96, 2, 2, 8, config=c),
        lambda st: R.avg_pool3d_channels_bf16(st[0], C96, 2, 2, 8),
        2 * _numel(F) + 2 * _numel(po),
        [None, (None, None, 2), (None, None, 8), (16, 64, 2), (32, 32, 2), (8, 64, 1)])

    for c in (384, 96):
        specs[f"pack{c}"] = (
            f"pack_causal_cache3_nhwc_bf16 B=1,C={c},H=60,W=104",
            lambda g, c=c: (_x((1, c, 2, 60, 104), g), _x((1, c, 1, 60, 104), g),
                            _bf(1, 60, 104, 3 * c)),
            lambda st, cfg: L._pack_causal_cache3(st[0], st[1], st[2], config=cfg),
            lambda st: R.pack_causal_cache3_nhwc_bf16(st[0], st[1]),
            4 * 3 * c * 60 * 104,
            # (BC, BS, num_warps)
            [None, (64, 128, 8), (128, 64, 8), (32, 128, 4), (64, 64, 2), (32, 256, 8)])

    for nv in (2, 3):
        specs[f"im2col{nv}"] = (
            f"patch_im2col_bf16 NV={nv},224x224x3",
            lambda g, nv=nv: (_x((nv, 224, 224, 3), g, 1.0), _bf(nv * 256, 588)),
            lambda st, c: L._patch_im2col(st[0], st[1], config=c),
            lambda st: R.patch_im2col_bf16(st[0]),
            4 * nv * 224 * 224 * 3,
            # (BLOCK words, num_warps)
            [None, (256, 1), (512, 4), (128, 1), (256, 2)])

    lat, latl = (1, 16, 21, 60, 104), (1, 21, 60, 104, 16)
    n = _numel(lat)
    tcands = [None, (16, 128, 2), (16, 512, 8), (16, 256, 2), (16, 512, 4), (16, 1024, 8)]
    specs["blc16"] = (
        "ncdhw_to_blc_bf16 1x16x21x60x104",
        lambda g: (_x(lat, g), _bf(1, 21 * 60 * 104, 16)),
        lambda st, c: L._launch_transpose(st[0], st[1], B=1, C=16, T=21, HW=6240,
                                          to_channels_last=True, config=c),
        lambda st: R.ncdhw_to_blc_bf16(st[0]), 4 * n, tcands)
    specs["ndhwc16"] = (
        "ndhwc_to_ncdhw_bf16 1x21x60x104x16",
        lambda g: (_x(latl, g), _bf(*lat)),
        lambda st, c: L._launch_transpose(st[0], st[1], B=1, C=16, T=21, HW=6240,
                                          to_channels_last=False, config=c),
        lambda st: R.ndhwc_to_ncdhw_bf16(st[0]), 4 * n, tcands)

    cache = (1, 96, 2, 60, 104)
    specs["cache2"] = (
        "update_cache2_ncdhw_bf16 1x96x21x60x104",
        lambda g: (_x(F, g), _x(cache, g), _bf(*cache)),
        lambda st, c: L._launch_plane(L.MODE_CACHE2, st[0], st[2], B=1, T=21, C=96, HW=6240,
                                      x2=st[1], config=c),
        lambda st: R.update_cache2_ncdhw_bf16(st[0], st[1]), 4 * _numel(cache),
        # (BP, BHW, num_warps, element blocks fastest)
        [None, (8, 512, 4), (2, 2048, 4), (16, 256, 4), (4, 1024, 8), (1, 4096, 4),
         (1, 4096, 4, True), (1, 2048, 4, True), (2, 2048, 4, True), (1, 4096, 8, True)])

    us = (1, 192, 11, 60, 104)
    specs["unshuffle"] = (
        "time_unshuffle2_bf16 1x192x11x60x104",
        lambda g: (_x(us, g), _bf(1, 96, 22, 60, 104)),
        lambda st, c: L._launch_plane(L.MODE_UNSHUFFLE, st[0], st[1], B=1, T=11, C=96,
                                      HW=6240, config=c),
        lambda st: R.time_unshuffle2_bf16(st[0]), 4 * _numel(us),
        [None, (16, 256, 4), (8, 512, 4), (8, 256, 2), (32, 256, 8), (2, 1024, 2),
         (2, 1024, 2, True), (1, 1024, 2, True), (1, 2048, 4, True), (4, 512, 2, True)])

    specs["bias"] = (
        "add_bias_ncdhw_bf16 1x96x21x60x104",
        # in place: ours mutates st[0]; the reference reads the pristine copy st[1]
        lambda g: (lambda x: (x, x.clone(), _x((96,), g, 0.5)))(_x(F, g)),
        lambda st, c: L._launch_plane(L.MODE_BIAS, st[0], st[0], B=1, T=21, C=96, HW=6240,
                                      bias=st[2], config=c),
        lambda st: R.add_bias_ncdhw_bf16(st[1], st[2]), 4 * _numel(F) + 2 * 96,
        [None, (1, 1024, 4), (1, 2048, 4), (2, 1024, 2), (8, 1024, 8), (1, 4096, 4),
         (1, 1024, 4, True), (1, 2048, 4, True), (1, 2048, 8, True), (1, 4096, 8, True)])
    return specs


def _verify(name, st, ours, ref, cfg):
    """Run candidate ``cfg`` once and compare what it wrote with reference.py."""
    if name == "bias":  # in place: start from the pristine values
        st[0].copy_(st[1])
    ours(st, cfg)
    return compare("exact", st[0] if name == "bias" else st[-1], ref(st))


def tune(names, budget, out_path, log, sweep=None):
    kernel = load_built(Package("flashrt-spatiotemporal-layout"))
    L = importlib.import_module(f"{kernel.__name__}.layout")
    R = reference_of(kernel)
    specs = _specs(L, R)
    t0 = time.perf_counter()
    copy_gbps = harness.copy_bandwidth_gbps()
    log(f"{torch.cuda.get_device_name(0)}: 1 GiB copy {copy_gbps:.0f} GB/s")
    results = {"gpu": torch.cuda.get_device_name(0), "copy_gbps": copy_gbps, "ops": []}
    for name in names:
        if time.perf_counter() - t0 > budget:
            log(f"{name}: skipped (time budget)")
            continue
        label, make, ours, ref, nbytes, cands = specs[name]
        cands = cands if sweep is None or name in sweep else cands[:1]
        sets = [make(torch.Generator().manual_seed(i))
                for i in range(harness.rotation_sets(nbytes))]
        row = {"op": label, "bytes": nbytes, "sets": len(sets), "candidates": []}
        compiled, row["compile_status"] = harness.verified_compile(
            ref, sets, lambda got, want: [compare("exact", got, want)])
        row["eager_us"] = harness.graph_us(ref, sets)
        row["compile_us"] = harness.graph_us(compiled, sets) if compiled else None
        row["copy_us"] = harness.same_size_copy_us(nbytes, len(sets))
        for cfg in cands:
            v = _verify(name, sets[0], ours, ref, cfg)
            entry = {"config": cfg, "ok": v.ok}
            if v.ok:
                entry["us"] = harness.graph_us(lambda st, cfg=cfg: ours(st, cfg), sets)
                entry["pct_copy_bw"] = 100 * nbytes / (entry["us"] * 1e-6) / 1e9 / copy_gbps
            row["candidates"].append(entry)
        if name != "bias":
            # The baselines return fresh tensors, which the graph's memory pool hands out
            # again on every call: one output buffer, hot in L2. Ours with one shared
            # output buffer too, to tell that effect from kernel speed.
            one_out = [st[:-1] + sets[0][-1:] for st in sets]
            row["default_one_out_us"] = harness.graph_us(lambda st: ours(st, None), one_out)
        results["ops"].append(row)
        out_path.write_text(json.dumps(results, indent=1) + "\n")  # partial results survive a kill
        comp = f"{row['compile_us']:.2f}" if row["compile_us"] else row["compile_status"][:30]
        log(f"{label}: eager {row['eager_us']:.2f} compile {comp} copy {row['copy_us']:.2f} us")
        if "default_one_out_us" in row:
            log(f"    default, one output buffer   {row['default_one_out_us']:7.2f} us")
        for e in row["candidates"]:
            t = f"{e['us']:7.2f} us {e['pct_copy_bw']:5.1f}%" if e["ok"] else "WRONG OUTPUT"
            log(f"    {str(e['config']):28s} {t}")
        del sets
        torch.cuda.empty_cache()
    log(f"tuned in {time.perf_counter() - t0:.0f} s")
    return results


ORDER = ["c2s", "pool", "pack384", "im2col2", "pack96", "im2col3", "blc16", "ndhwc16",
         "cache2", "unshuffle", "bias"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--ops", default=",".join(ORDER))
    p.add_argument("--budget", type=float, default=600.0,
                   help="seconds after which the remaining ops are skipped")
    p.add_argument("--sweep", default=None,
                   help="ops whose every candidate is timed (default: all); the other ops "
                        "time only the launcher's default configuration (and the baselines)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tune(args.ops.split(","), args.budget, args.out / "tune_layout.json",
         lambda m: print(m, flush=True),
         sweep=None if args.sweep is None else set(filter(None, args.sweep.split(","))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
