"""Input builders and the accuracy sweep of flashrt-spatiotemporal-layout.

Shared by the tests, `flashrt validate` and the benchmark's correctness gate.
Data: random normal activations (never zeros), biases of the same order, FP8
inputs scaled so that a few values saturate at +-448.

CPU shapes are small but ragged: odd channel counts, channel counts just over
a tile (67, 130), odd H/W, one frame, the spec's test latents (1,8,4,8,8),
(1,16,8,32,32), (1,64,4,32,32). GPU adds Wan VAE shapes (1 x 16-96 x 9-21 x
60 x 104) and the PI0.5 two-view patch im2col.
"""

import torch

from flashrt_tools.validation import Case, device_for_run

BF16 = torch.bfloat16


def randn(shape, gen, device, scale=1.0, shift=0.0, dtype=BF16):
    return (torch.randn(shape, generator=gen) * scale + shift).to(dtype=dtype, device=device)




# --- per-function input builders: (args, kwargs) -----------------------------------------------


def ncdhw_inputs(shape, device, gen):
    return (randn(shape, gen, device, 2.0),), {}


def ndhwc_inputs(shape, device, gen, *, bias=False, residual=False):
    """x (B, T, H, W, C) plus bias (C,) or residual (B, C, T, H, W)."""
    B, T, H, W, C = shape
    args = (randn(shape, gen, device, 2.0),)
    if bias:
        args += (randn((C,), gen, device, 0.5, 0.1),)
    if residual:
        args += (randn((B, C, T, H, W), gen, device, 2.0),)
    return args, {}


def fp8_inputs(shape, scale, device, gen):
    """x at scale 8: |x| / scale passes 448 on the tail for scale <= 0.04 (saturation)."""
    return (randn(shape, gen, device, 8.0), scale), {}


def bias_inputs(shape, device, gen):
    return (randn(shape, gen, device, 2.0), randn((shape[1],), gen, device, 0.5)), {}


def cache2_inputs(shape, device, gen):
    B, C, T, H, W = shape
    return (randn(shape, gen, device, 2.0), randn((B, C, 2, H, W), gen, device, 2.0)), {}


def pack_inputs(shape, device, gen):
    """shape = (B, C, H, W): previous (B, C, 2, H, W), current (B, C, 1, H, W)."""
    B, C, H, W = shape
    return (randn((B, C, 2, H, W), gen, device, 2.0), randn((B, C, 1, H, W), gen, device, 2.0)), {}


def c2s_inputs(shape, co, tf, sf, repeats, first_chunk, device, gen):
    return (randn(shape, gen, device, 2.0), co, tf, sf, repeats, first_chunk), {}


def pool_inputs(shape, co, ft, fs, g, device, gen):
    return (randn(shape, gen, device, 2.0), co, ft, fs, g), {}


def im2col_inputs(nv, device, gen):
    return (randn((nv, 224, 224, 3), gen, device, 1.0),), {}


def _case(function, label, make, formats=("exact",), mutates=False):
    return Case(function, label, make, formats, mutates=mutates)


def _shape_label(shape):
    return "x".join(map(str, shape))


# --- the sweep ----------------------------------------------------------------------------------


def _sweep(on_gpu):
    ncdhw = [(1, 8, 4, 8, 8), (2, 5, 3, 3, 7), (1, 67, 2, 5, 9), (1, 3, 1, 1, 1), (1, 16, 8, 32, 32)]
    ndhwc = [(1, 4, 8, 8, 8), (2, 3, 3, 7, 5), (1, 2, 5, 9, 67), (1, 1, 1, 1, 3)]
    fp8 = [((1, 8, 4, 8, 8), 0.03125), ((2, 6, 3, 5, 7), 0.04), ((1, 130, 2, 3, 5), 0.03125),
           ((1, 4096, 1, 2, 3), 0.04)]  # C = 4096: beyond the original shared-memory cap
    up = [((1, 8, 4, 8), 0.03125), ((2, 6, 3, 5), 0.04), ((1, 130, 3, 7), 0.03125)]
    unshuffle = [(1, 16, 4, 8, 8), (2, 6, 3, 3, 5), (1, 2, 1, 1, 1)]
    bias = [(1, 8, 4, 8, 8), (2, 5, 3, 3, 7), (1, 1, 1, 1, 1)]
    cache2 = [(1, 8, 4, 8, 8), (2, 5, 2, 3, 7), (2, 5, 1, 3, 7),
              (1, 3, 3, 20, 30), (1, 3, 1, 20, 30)]  # 2 * H * W > one 1024 block
    pack = [(1, 8, 8, 8), (2, 5, 3, 7), (1, 70, 2, 3)]
    c2s = [((1, 8, 3, 4, 4), 2, 2, 2, 2, False), ((1, 8, 3, 4, 4), 2, 2, 2, 2, True),
           ((1, 8, 1, 3, 5), 2, 2, 2, 2, True), ((1, 8, 1, 3, 5), 2, 2, 2, 2, False),
           ((1, 64, 2, 3, 5), 16, 1, 2, 1, False), ((2, 12, 2, 3, 5), 3, 2, 1, 1, False),
           ((1, 9, 2, 2, 3), 1, 1, 3, 1, True), ((1, 5, 2, 3, 3), 4, 2, 1, 2, True),
           # dispatch: sf = 4 interleave (4 loads / 2 + 2), sf = 2 with repeats 1 (two
           # channels), sf = 3 strided stores with one shared load, then W = 130 and
           # OH = 18: two column and two row blocks, W even but not a multiple of 4
           ((1, 16, 2, 3, 5), 1, 1, 4, 1, False), ((1, 32, 1, 2, 3), 2, 1, 4, 2, False),
           ((1, 8, 2, 3, 6), 1, 2, 2, 1, True), ((1, 3, 1, 2, 5), 1, 1, 3, 3, False),
           ((1, 6, 1, 9, 130), 1, 1, 2, 2, False)]
    pool = [((1, 8, 4, 8, 8), 8, 2, 2, 8), ((1, 8, 5, 8, 8), 8, 2, 2, 8),
            ((2, 3, 3, 4, 6), 18, 3, 2, 2), ((1, 6, 2, 4, 4), 4, 2, 2, 12),
            ((1, 5, 3, 3, 5), 5, 1, 1, 1),
            # dispatch: fs = 2 with an odd group (groups straddle pixel pairs: strided
            # loads), fs = 3, and ho = 33 / wo = 130: two row and two column blocks
            ((1, 3, 2, 4, 6), 4, 1, 2, 3), ((1, 2, 3, 6, 9), 2, 1, 3, 9),
            ((1, 1, 3, 66, 260), 1, 2, 2, 8),
            # a padded front frame with a group that is not a power of two (the IEEE
            # division path): pixel pairs (g = 6) and strided loads (g = 3)
            ((1, 3, 3, 4, 6), 4, 2, 2, 6), ((1, 3, 1, 3, 5), 2, 2, 1, 3)]
    im2col = [1]
    if on_gpu:
        wan = [(1, 16, 21, 60, 104), (1, 96, 9, 60, 104), (1, 48, 21, 60, 104)]
        ncdhw += wan + [(1, 64, 4, 32, 32), (1, 320, 17, 32, 32), (1, 512, 4, 64, 64)]
        ndhwc += [(1, 21, 60, 104, 16), (1, 9, 60, 104, 96), (1, 4, 64, 64, 512)]
        fp8 += [((1, 96, 9, 60, 104), 0.04), ((1, 512, 4, 64, 64), 0.03125)]
        up += [((9, 96, 60, 104), 0.04), ((4, 384, 30, 52), 0.03125)]
        unshuffle += [(1, 192, 9, 60, 104)]
        bias += [(1, 96, 21, 60, 104)]
        cache2 += [(1, 96, 9, 60, 104), (1, 96, 1, 60, 104)]
        pack += [(1, 96, 60, 104), (1, 384, 30, 52)]
        c2s += [((1, 384, 5, 30, 52), 96, 2, 2, 2, True), ((1, 384, 4, 60, 104), 96, 1, 2, 1, False)]
        pool += [((1, 96, 9, 60, 104), 96, 2, 2, 8), ((1, 192, 5, 30, 52), 64, 2, 2, 24)]
        im2col += [2, 8]

    cases = []
    for s in ncdhw:
        cases.append(_case("ncdhw_to_blc_bf16", _shape_label(s),
                           lambda d, g, s=s: ncdhw_inputs(s, d, g)))
    for s in ndhwc:
        lab = _shape_label(s)
        cases.append(_case("ndhwc_to_ncdhw_bf16", lab, lambda d, g, s=s: ndhwc_inputs(s, d, g)))
        cases.append(_case("ndhwc_to_ncdhw_bias_bf16", lab,
                           lambda d, g, s=s: ndhwc_inputs(s, d, g, bias=True)))
        cases.append(_case("ndhwc_to_ncdhw_add_bf16", lab,
                           lambda d, g, s=s: ndhwc_inputs(s, d, g, residual=True)))
    for s, sc in fp8:
        cases.append(_case("ncdhw_quantize_fp8_static_ndhwc_bf16", f"{_shape_label(s)},scale={sc}",
                           lambda d, g, s=s, sc=sc: fp8_inputs(s, sc, d, g), ("fp8",)))
    for s, sc in up:
        cases.append(_case("upsample2x_quantize_fp8_static_nhwc_bf16",
                           f"{_shape_label(s)},scale={sc}",
                           lambda d, g, s=s, sc=sc: fp8_inputs(s, sc, d, g), ("fp8",)))
    for s in unshuffle:
        cases.append(_case("time_unshuffle2_bf16", _shape_label(s),
                           lambda d, g, s=s: ncdhw_inputs(s, d, g)))
    for s in bias:
        cases.append(_case("add_bias_ncdhw_bf16", _shape_label(s),  # in place
                           lambda d, g, s=s: bias_inputs(s, d, g), mutates=True))
    for s in cache2:
        cases.append(_case("update_cache2_ncdhw_bf16", _shape_label(s),
                           lambda d, g, s=s: cache2_inputs(s, d, g)))
    for s in pack:
        cases.append(_case("pack_causal_cache3_nhwc_bf16", f"BCHW={_shape_label(s)}",
                           lambda d, g, s=s: pack_inputs(s, d, g)))
    for s, co, tf, sf, rep, fc in c2s:
        cases.append(_case("channel_to_space3d_bf16",
                           f"{_shape_label(s)},Co={co},tf={tf},sf={sf},r={rep},first={int(fc)}",
                           lambda d, g, a=(s, co, tf, sf, rep, fc): c2s_inputs(*a, d, g)))
    for s, co, ft, fs, grp in pool:
        cases.append(_case("avg_pool3d_channels_bf16",
                           f"{_shape_label(s)},Co={co},ft={ft},fs={fs},g={grp}",
                           lambda d, g, a=(s, co, ft, fs, grp): pool_inputs(*a, d, g)))
    for nv in im2col:
        cases.append(_case("patch_im2col_bf16", f"NV={nv}", lambda d, g, nv=nv: im2col_inputs(nv, d, g)))
    return cases


CASES = _sweep(on_gpu=device_for_run().type == "cuda")
