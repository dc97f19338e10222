"""Launch-configuration sweep of flashrt-spatiotemporal-layout: how the launch rules of
``layout.py`` (tile shapes, warps, index width) were chosen.

Rows are the bench_layout.py model shapes where the package trailed verified
torch.compile on H200, plus guard rows (already faster) of changed kernels. Each
candidate configuration (passed to the op's launcher as ``config``, positional;
``None`` entries keep the rule's value) is checked bit for bit against reference.py
on the first input set, then timed with the harness (CUDA-graph replay over
L2-rotated input sets) beside torch.compile of reference.py (verified first).
``rule`` is the launcher's default; ``int64`` the rule's tiles with 64-bit index math.

Run on a GPU: ``python3 flashrt-spatiotemporal-layout/benchmarks/tune_layout.py --out DIR
[--rows pack96,blc16,...] [--budget SECONDS]``; prints one line per candidate and a
summary, writes DIR/tune_layout.json (rewritten after every row). Rows run in
priority order; a row starts only with time left, its candidates until the budget.

Round of 2026-12-02, NVIDIA H200 (torch 2.11, Triton 3.6; 39 s for all rows). The
rule then: int32 index math, pack_causal_cache3 with one source per channel tile,
and the earlier tiles (ndhwc_to_ncdhw [32, 128], pack 96 channels [32, 128] x 4 warps).
us (compile; rule; int64; best other):

* pack_causal_cache3 C=96: 3.77; 3.94; 3.94; [32, 64] x 2 warps 3.80. C=384: 9.06;
  9.39; 9.95; [64, 128] x 8 9.62, [128, 32] x 4 9.99.
* 16 channels, blc / ndhwc / + bias: 3.93 / 3.83 / 3.95; 3.97 / 3.96 / 4.16; 4.24 /
  4.06 / 4.25; nothing better than 0.04 us ([16, 128] x 4, [16, 64] x 2).
* 96 channels 21x60x104: ndhwc 14.54; 15.06; 15.19; [128, 32] x 4 14.07. + bias 14.85;
  15.78; 15.78; [128, 32] 14.77. + add 20.80; 20.93; 21.25; [128, 32] 21.10. blc 14.31;
  14.37; 14.29; [128, 32] 14.86, [32, 256] x 8 14.55.
* 96 channels 9x120x208: ndhwc 23.57; 24.69; 24.96; [128, 32] 24.08. + bias 23.74;
  25.51; 25.30; [128, 32] 24.37. + add 32.97; 33.81; 34.04; [128, 32] 36.23. blc 22.90;
  23.12; 23.02.
* plane kernel (unshuffle / in-place bias / cache2), 60x104: 14.62 / 13.84 / 3.65;
  14.95 / 14.44 / 3.29; 15.11 / 14.60 / 3.28; no other tile faster (up to 16.69 us);
  120x208: 24.73 / 22.18 / 6.65; 24.87 / 22.38 / 6.70; 25.00 / 22.43 / 6.67.
* avg_pool3d_channels 60x104: 13.76 (the bench's record on the same GPU: 10.16); 9.17;
  10.57; 8 warps 9.03. 120x208: 15.29; 14.46; 14.56.
* patch_im2col NV=2 / 3: 2.21 / 2.40; 2.28 / 2.46 (512 words x 4 warps); 256 x 1,
  512 x 2, 512 x 1 slower (2.38-2.65).
* guards: channel_to_space3d T=2 9.14; 8.89; 8.92. FP8 transpose 13.77; 11.30; 11.42.

Adopted: int32 index math; ndhwc_to_ncdhw without a residual reads whole channel rows
([128, 32] at 96 channels); 2048-element bf16 tiles up to 2^22 elements moved (pack
C=96 [32, 64] x 2; the 16-channel rows had them already).

Added after that round: the upsample quantizer's rows (``up60``, ``uphi``: 69% / 77% of
copy BW in the 2026-12-03 bench record, the widest bandwidth gap of the package), first
in the order, its tiles through ``_upsample2x_quantize(config=...)``; every row now also
records a same-size device copy (``copy_us``). H200, 2026-12-04 (``--rows up60,uphi``):
21x96x60x104 the rule [32, 128] x 4 warps 26.08 us, (32, 64, 4) 25.85, (32, 128, 4) 26.07,
[128, 32] x 8 30.18 (W = 104 leaves a 19% masked tail in 32-wide tiles); 9x96x120x208
[128, 32] x 8 35.14, x 4 35.92, (128, 64, 8) 37.01, (32, 256, 8) 39.19, the rule 40.42
(compile 168.40 / 305.66). Adopted: [C, 32] x 8 warps from W = 192
(``_UPSAMPLE_WIDE_W``).
"""

import time

T0 = time.monotonic()  # the budget counts from here (before torch is imported)

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench import harness  # noqa: E402
from flashrt_tools.repo import Package  # noqa: E402
from flashrt_tools.tolerance import compare  # noqa: E402
from flashrt_tools.validation import load_built, reference_of  # noqa: E402

BF16 = torch.bfloat16
DEV = torch.device("cuda")
ROW_RESERVE_S = 8.0  # a row starts only this long before the budget
RULE, INT64 = ("rule", None), ("int64", (None, None, None, True))
PLANE_INT64 = ("int64", (None, None, None, None, True))


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _x(shape, seed, scale=2.0):
    """Random bf16 on the device (generated there: large inputs, little host time)."""
    g = torch.Generator(DEV).manual_seed(seed)
    return (torch.randn(shape, generator=g, device=DEV) * scale).to(BF16)


def _bf(*shape):
    return torch.empty(shape, dtype=BF16, device=DEV)


def _label(shape):
    return "x".join(map(str, shape))


def _named(*cfgs):
    return [(str(c), c) for c in cfgs]


def _transpose_rows(L, R, tag, shape, plain, fused):
    """ncdhw_to_blc / ndhwc_to_ncdhw (+ bias, + add) rows of one NCDHW shape."""
    B, C, T, H, W = cf = shape
    cl = (B, T, H, W, C)
    n = _numel(cf)
    kw = dict(B=B, C=C, T=T, HW=H * W)

    def launch(x, out, to_channels_last, c, **extra):
        L._launch_transpose(x, out, to_channels_last=to_channels_last, config=c, **kw, **extra)

    rows = [
        (f"blc{tag}", (f"ncdhw_to_blc_bf16 {_label(cf)}",
                       lambda s: (_x(cf, s), _bf(B, T * H * W, C)),
                       lambda st, c: launch(st[0], st[1], True, c),
                       lambda st: R.ncdhw_to_blc_bf16(st[0]), 4 * n, plain)),
        (f"nd{tag}", (f"ndhwc_to_ncdhw_bf16 {_label(cl)}", lambda s: (_x(cl, s), _bf(*cf)),
                      lambda st, c: launch(st[0], st[1], False, c),
                      lambda st: R.ndhwc_to_ncdhw_bf16(st[0]), 4 * n, plain)),
        (f"ndb{tag}", (f"ndhwc_to_ncdhw_bias_bf16 {_label(cl)}",
                       lambda s: (_x(cl, s), _x((C,), s + 1000, 0.5), _bf(*cf)),
                       lambda st, c: launch(st[0], st[2], False, c, bias=st[1]),
                       lambda st: R.ndhwc_to_ncdhw_bias_bf16(st[0], st[1]), 4 * n + 2 * C,
                       fused))]
    if C > 16:  # the 16-channel add row wins by 1.7x
        rows.append((f"nda{tag}", (f"ndhwc_to_ncdhw_add_bf16 {_label(cl)}",
                                   lambda s: (_x(cl, s), _x(cf, s + 1000), _bf(*cf)),
                                   lambda st, c: launch(st[0], st[2], False, c, residual=st[1]),
                                   lambda st: R.ndhwc_to_ncdhw_add_bf16(st[0], st[1]), 6 * n,
                                   fused)))
    return rows


def _plane_rows(L, R, tag, shape, unshuffle, bias, cache2):
    """time_unshuffle2 (of the 2C-channel, ceil(T/2)-frame input), in-place bias and
    update_cache2 rows of one NCDHW shape."""
    B, C, T, H, W = shape
    HW, t2 = H * W, (T + 1) // 2
    xs, cache = (B, 2 * C, t2, H, W), (B, C, 2, H, W)

    def launch(mode, x, out, t, c, **extra):
        L._launch_plane(mode, x, out, B=B, T=t, C=C, HW=HW, config=c, **extra)

    return [
        (f"unshuffle{tag}", (f"time_unshuffle2_bf16 {_label(xs)}",
                             lambda s: (_x(xs, s), _bf(B, C, 2 * t2, H, W)),
                             lambda st, c: launch(L.MODE_UNSHUFFLE, st[0], st[1], t2, c),
                             lambda st: R.time_unshuffle2_bf16(st[0]), 4 * _numel(xs),
                             unshuffle)),
        # in place: ours mutates st[0]; the reference reads the pristine copy st[1]
        (f"bias{tag}", (f"add_bias_ncdhw_bf16 {_label(shape)}",
                        lambda s: (lambda x: (x, x.clone(), _x((C,), s + 1000, 0.5)))(
                            _x(shape, s)),
                        lambda st, c: launch(L.MODE_BIAS, st[0], st[0], T, c, bias=st[2]),
                        lambda st: R.add_bias_ncdhw_bf16(st[1], st[2]),
                        4 * _numel(shape) + 2 * C, bias)),
        (f"cache2{tag}", (f"update_cache2_ncdhw_bf16 {_label(shape)}",
                          lambda s: (_x(shape, s), _x(cache, s + 1000), _bf(*cache)),
                          lambda st, c: launch(L.MODE_CACHE2, st[0], st[2], T, c, x2=st[1]),
                          lambda st: R.update_cache2_ncdhw_bf16(st[0], st[1]),
                          4 * _numel(cache), cache2))]


def _specs(L, R):
    """key -> (label, make(seed) -> input set, ours(set, config), reference(set), bytes,
    [(name, config)]); the first candidate is the launcher's rule."""
    lat, feat, hi = (1, 16, 21, 60, 104), (1, 96, 21, 60, 104), (1, 96, 9, 120, 208)
    t16 = [RULE, INT64] + _named((16, 128, 4), (16, 64, 2))
    # [32, 128] / [128, 32]: the ncdhw_to_blc / ndhwc_to_ncdhw (no residual) rules
    t96 = [RULE, INT64] + _named((32, 128, 4), (128, 32, 4), (32, 256, 8), (32, 64, 2))
    t96_short = [RULE, INT64] + _named((32, 128, 4), (128, 32, 4), (32, 256, 8))
    plane = [RULE, PLANE_INT64]
    rows = (_transpose_rows(L, R, "16", lat, t16, [RULE, INT64] + _named((16, 128, 4)))
            + _transpose_rows(L, R, "96", feat, t96, t96_short)
            + _transpose_rows(L, R, "hi", hi, t96_short, t96_short)
            + _plane_rows(L, R, "60", feat,
                          plane + _named((1, 4096, 8, True), (1, 8192, 8, True),
                                         (64, 32, 4, False)),
                          plane + _named((1, 2048, 4, True), (1, 2048, 8, True),
                                         (1, 4096, 8, True)),
                          plane)
            + _plane_rows(L, R, "hi", hi,
                          plane + _named((1, 4096, 8, True), (1, 8192, 8, True)),
                          plane + _named((1, 2048, 4, True), (1, 2048, 8, True),
                                         (1, 4096, 8, True)),
                          plane + _named((1, 4096, 8, False), (1, 2048, 4, True)))
            + _other_rows(L, R))
    return dict(rows)


def _pack_row(L, R, c, cands):
    prev, cur = (1, c, 2, 60, 104), (1, c, 1, 60, 104)
    return (f"pack{c}", (f"pack_causal_cache3_nhwc_bf16 B=1,C={c},H=60,W=104",
                         lambda s: (_x(prev, s), _x(cur, s + 1000), _bf(1, 60, 104, 3 * c)),
                         lambda st, cfg: L._pack_causal_cache3(st[0], st[1], st[2], config=cfg),
                         lambda st: R.pack_causal_cache3_nhwc_bf16(st[0], st[1]),
                         4 * 3 * c * 60 * 104, [RULE, INT64] + cands))


def _pool_row(L, R, tag, shape, cands):
    B, C, T, H, W = shape
    po = (B, C, (T + 1) // 2, H // 2, W // 2)
    return (f"pool{tag}", (f"avg_pool3d_channels_bf16 {_label(shape)},ft=2,fs=2,g=8",
                           lambda s: (_x(shape, s), _bf(*po)),
                           lambda st, c: L._avg_pool3d_channels(st[0], st[1], C, 2, 2, 8,
                                                                config=c),
                           lambda st: R.avg_pool3d_channels_bf16(st[0], C, 2, 2, 8),
                           2 * _numel(shape) + 2 * _numel(po), [RULE, INT64] + cands))


def _im2col_row(L, R, nv):
    return (f"im2col{nv}", (f"patch_im2col_bf16 NV={nv},224x224x3",
                            lambda s: (_x((nv, 224, 224, 3), s, 1.0), _bf(nv * 256, 588)),
                            lambda st, c: L._patch_im2col(st[0], st[1], config=c),
                            lambda st: R.patch_im2col_bf16(st[0]), 4 * nv * 224 * 224 * 3,
                            [RULE] + _named((512, 2), (256, 1), (512, 1))))


def _upsample_row(L, R, tag, shape, cands):
    """upsample2x_quantize (frames as batch): bf16 (N, C, H, W) read, four fp8 copies
    of each element written (channels-last runs of one channel block)."""
    N, C, H, W = shape
    return (f"up{tag}", (f"upsample2x_quantize_fp8_static_nhwc_bf16 {_label(shape)},scale=0.04",
                         lambda s: (_x(shape, s, 8.0),
                                    torch.empty(N, 2 * H, 2 * W, C, dtype=torch.float8_e4m3fn,
                                                device=DEV)),
                         lambda st, c: L._upsample2x_quantize(st[0], 0.04, st[1], config=c),
                         lambda st: R.upsample2x_quantize_fp8_static_nhwc_bf16(st[0], 0.04),
                         6 * _numel(shape), [RULE] + cands))


def _other_rows(L, R):
    """pack, pool, im2col, and guard rows (already faster than compile) of kernels the
    index-width change touches: channel_to_space3d and the FP8 transpose."""
    xs, os_ = (1, 384, 2, 60, 104), (1, 96, 4, 120, 208)
    f = (1, 96, 21, 60, 104)
    return [
        _pack_row(L, R, 96, _named((32, 128, 4), (32, 64, 2), (32, 256, 8), (64, 64, 4))),
        _pack_row(L, R, 384, _named((64, 128, 8), (128, 32, 4))),
        _pool_row(L, R, "60", f, _named((32, 64, 8), (16, 64, 2))),
        _pool_row(L, R, "hi", (1, 96, 9, 120, 208), []),
        _im2col_row(L, R, 2), _im2col_row(L, R, 3),
        # the rule: [32, 128] x 8 warps (one 32-channel block of three at C = 96);
        # [128, *]: the whole 96 channels one contiguous 96-byte run a pixel
        _upsample_row(L, R, "60", (21, 96, 60, 104),
                      _named((128, 32, 8), (128, 32, 4), (128, 64, 8), (64, 64, 8),
                             (32, 128, 4), (32, 256, 8), (32, 64, 4))),
        _upsample_row(L, R, "hi", (9, 96, 120, 208),
                      _named((128, 32, 8), (128, 32, 4), (128, 64, 8), (32, 256, 8),
                             (32, 128, 4))),
        ("c2s", ("channel_to_space3d_bf16 1x384x2x60x104,Co=96,tf=2,sf=2,r=2",
                 lambda s: (_x(xs, s), _bf(*os_)),
                 lambda st, c: L._channel_to_space3d(st[0], st[1], 96, 2, 2, 2, False,
                                                     config=c),
                 lambda st: R.channel_to_space3d_bf16(st[0], 96, 2, 2, 2, False),
                 2 * _numel(xs) + 2 * _numel(os_), [RULE, ("int64", (None,) * 4 + (True,))])),
        ("fp8", ("ncdhw_quantize_fp8_static_ndhwc_bf16 1x96x21x60x104,scale=0.04",
                 lambda s: (_x(f, s, 8.0), torch.empty(1, 21, 60, 104, 96,
                                                       dtype=torch.float8_e4m3fn, device=DEV)),
                 lambda st, c: L._launch_transpose(st[0], st[1], B=1, C=96, T=21, HW=6240,
                                                   to_channels_last=True, scale=0.04, config=c),
                 lambda st: R.ncdhw_quantize_fp8_static_ndhwc_bf16(st[0], 0.04), 3 * _numel(f),
                 [RULE, INT64])),
    ]


# priority order: the widest gaps to compile first, guard rows (already faster) last
ORDER = ["up60", "uphi", "pack96", "blc16", "nd16", "ndb16", "nd96", "ndb96", "blc96", "nda96",
         "unshuffle60", "bias60", "pool60", "pack384", "ndhi", "ndbhi", "ndahi", "unshufflehi", "biashi",
         "cache2hi", "im2col2", "im2col3", "blchi", "cache260", "poolhi", "c2s", "fp8"]


def _judge(fmt):
    return lambda got, want: [compare(fmt, got, want)]


def _verify(key, st, ours, ref, cfg, fmt):
    """Run candidate ``cfg`` once on a poisoned output and compare it with reference.py."""
    if key.startswith("bias"):  # in place: start from the pristine values
        st[0].copy_(st[1])
        ours(st, cfg)
        got = st[0]
    else:
        out = st[-1] if st[-1].dtype == BF16 else st[-1].view(torch.uint8)
        out.fill_(float("nan") if st[-1].dtype == BF16 else 0x7F)
        ours(st, cfg)
        got = st[-1]
    return compare(fmt, got, ref(st))


def tune_row(key, spec, clock, log):
    label, make, ours, ref, nbytes, cands = spec
    fmt = "fp8" if key == "fp8" or key.startswith("up") else "exact"
    sets = [make(i) for i in range(harness.rotation_sets(nbytes))]
    row = {"key": key, "op": label, "bytes": nbytes, "sets": len(sets), "candidates": []}
    compiled, row["compile_status"] = harness.verified_compile(ref, sets, _judge(fmt))
    row["compile_us"] = harness.graph_us(compiled, sets) if compiled else None
    row["copy_us"] = harness.same_size_copy_us(nbytes, len(sets))
    for name, cfg in cands:
        if not clock.left(1.0):
            row["candidates"].append({"name": name, "config": cfg, "skipped": "budget"})
            continue
        v = _verify(key, sets[0], ours, ref, cfg, fmt)
        entry = {"name": name, "config": cfg, "ok": v.ok}
        if v.ok:
            entry["us"] = harness.graph_us(lambda st, cfg=cfg: ours(st, cfg), sets)
        else:
            entry["note"] = v.message
        row["candidates"].append(entry)
    comp = row["compile_us"]
    log(f"{label}: compile {comp or 0:.2f} us ({row['compile_status'][:40]}), same-size copy "
        f"{row['copy_us']:.2f} us, {nbytes / 2**20:.1f} MiB, {len(sets)} sets, "
        f"t = {clock.elapsed():.0f} s")
    for e in row["candidates"]:
        if e.get("us"):
            log(f"    {e['name']:26s} {e['us']:7.2f} us  x{(comp or 0) / e['us']:.3f} compile")
        else:
            log(f"    {e['name']:26s} {e.get('skipped') or 'WRONG OUTPUT: ' + e['note']}")
    del sets
    torch.cuda.empty_cache()
    return row


def summary(rows, log):
    log("summary (us; x = compile / ours):")
    for r in rows:
        timed = [c for c in r["candidates"] if c.get("us")]
        if not timed:
            continue
        comp = r["compile_us"] or 0
        best = min(timed, key=lambda c: c["us"])
        by = {c["name"]: c["us"] for c in timed}
        log(f"  {r['op']:62s} compile {comp:6.2f} | rule {by.get('rule', 0):6.2f} int64 "
            f"{by.get('int64', 0):6.2f} | best {best['name']} {best['us']:.2f} "
            f"(x{comp / best['us']:.3f})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rows", default=",".join(ORDER))
    p.add_argument("--budget", type=float, default=600.0,
                   help="seconds (from start) after which nothing new starts")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = 1  # in-process Triton compiles: the same kernels, no pool
    clock = harness.Clock(args.budget, T0)
    kernel = load_built(Package("flashrt-spatiotemporal-layout"))
    L = importlib.import_module(f"{kernel.__name__}.layout")
    R = reference_of(kernel)
    specs = _specs(L, R)
    record = {"environment": harness.environment(), "budget_s": args.budget, "rows": []}
    log = lambda m: print(m, flush=True)  # noqa: E731
    log(f"{record['environment']['gpu']}: started at t = {clock.elapsed():.0f} s")
    for key in args.rows.split(","):
        if not clock.left(ROW_RESERVE_S):
            log(f"{key}: skipped (budget)")
            record["rows"].append({"key": key, "skipped": "budget"})
            continue
        try:
            record["rows"].append(tune_row(key, specs[key], clock, log))
        except Exception as e:  # one broken row must not cost the rest of a GPU run
            log(f"{key}: FAILED {type(e).__name__}: {e}")
            record["rows"].append({"key": key, "error": f"{type(e).__name__}: {e}"})
            torch.cuda.empty_cache()
        record["elapsed_s"] = clock.elapsed()
        (args.out / "tune_layout.json").write_text(json.dumps(record, indent=1) + "\n")
    summary([r for r in record["rows"] if "candidates" in r], log)
    log(f"done in {clock.elapsed():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
