"""flashrt-spatiotemporal-layout: layout, cache and requantization glue for video VAEs,
DiTs, world models and VLA vision stems.

NCDHW <-> token (BLC) / NDHWC transposes (optionally fused with a channel bias,
a residual add or static FP8 quantization), temporal unshuffle, channel-to-space
decode, grouped spatiotemporal average pooling, two-frame latent caches,
causal-conv cache packing and the 224x224 / 14x14 patch im2col. Triton kernels;
CUDA, or CPU through the Triton interpreter.
"""

from .layout import (add_bias_ncdhw_bf16, avg_pool3d_channels_bf16, channel_to_space3d_bf16,
                     ncdhw_quantize_fp8_static_ndhwc_bf16, ncdhw_to_blc_bf16,
                     ndhwc_to_ncdhw_add_bf16, ndhwc_to_ncdhw_bf16, ndhwc_to_ncdhw_bias_bf16,
                     pack_causal_cache3_nhwc_bf16, patch_im2col_bf16, time_unshuffle2_bf16,
                     update_cache2_ncdhw_bf16, upsample2x_quantize_fp8_static_nhwc_bf16)

__all__ = [
    "ncdhw_to_blc_bf16", "patch_im2col_bf16", "time_unshuffle2_bf16", "add_bias_ncdhw_bf16",
    "update_cache2_ncdhw_bf16", "channel_to_space3d_bf16", "pack_causal_cache3_nhwc_bf16",
    "avg_pool3d_channels_bf16", "ndhwc_to_ncdhw_bf16", "ndhwc_to_ncdhw_bias_bf16",
    "ndhwc_to_ncdhw_add_bf16", "ncdhw_quantize_fp8_static_ndhwc_bf16",
    "upsample2x_quantize_fp8_static_nhwc_bf16",
]
