"""The public API (``__all__``) each package must export, from the specs.

Sources: spec/postprocess-norms.md (six packages) and spec/gemm-quant.md (six
packages). `flashrt check` compares each present package's ``__all__`` with its
list here (plus ``layers`` when the package has a layers.py).
"""

SPEC_API = {
    "flashrt-vla-video": [
        "q_norm_rope_bf16", "k_norm_rope_v_cache_bf16", "qkv_split_norm_rope_bf16",
    ],
    "flashrt-qkv-cache-rope": [
        "decode_q_norm_rope_stage_bf16", "decode_k_norm_rope_kvwrite_bf16",
        "decode_k_norm_rope_kvwrite_devpos_bf16", "qkv_split_per_head_norm_rope_bf16",
        "qkv_split_bias_rope_bf16", "qkv_split_bias_rope_fp16", "qkv_split_bf16",
        "qkv_split_rope_kvcache_bf16", "qkv_split_rope_kvcache_fp16",
        "qk_norm_rope_strided_bf16", "qkv_split_norm_rope_bf16",
        "qkv_split_bias_norm_rope_v_bf16", "qkv_split_bias_norm_rope_v_cat_bf16",
        "qkv_split_joint3_cat_bf16",
    ],
    "flashrt-residual-norm-quant": [
        "rms_norm_bf16", "rms_norm_quant_fp8_static_bf16", "residual_add_rms_norm_bf16",
        "residual_add_rms_norm_quant_fp8_static_bf16", "layer_norm_bf16",
    ],
    "flashrt-vla-residual-gates": [
        "bias_residual_bf16", "gate_residual_bf16", "joint3_bias_gate_residual_bf16",
        "joint3_bias_gate_residual_action_nobias_bf16", "joint3_bias_fp8_gate_residual_bf16",
        "joint3_bias_fp8_gate_residual_action_nobias_bf16",
    ],
    "flashrt-adaptive-norms": [
        "ada_rms_norm_style_bf16", "gate_residual_ada_norm_fp8_static_bf16",
    ],
    "flashrt-spatiotemporal-layout": [
        "ncdhw_to_blc_bf16", "patch_im2col_bf16", "time_unshuffle2_bf16", "add_bias_ncdhw_bf16",
        "update_cache2_ncdhw_bf16", "channel_to_space3d_bf16", "pack_causal_cache3_nhwc_bf16",
        "avg_pool3d_channels_bf16", "ndhwc_to_ncdhw_bf16", "ndhwc_to_ncdhw_bias_bf16",
        "ndhwc_to_ncdhw_add_bf16", "ncdhw_quantize_fp8_static_ndhwc_bf16",
        "upsample2x_quantize_fp8_static_nhwc_bf16",
    ],
    "flashrt-gemm-epilogues": [
        "bf16_linear_bf16", "bf16_linear_bias_bf16", "bf16_gemm_bias_gelu", "bf16_gemm_bias",
        "bias_gelu_quantize_fp8_static_bf16", "channel_scale_quantize_fp8_static_bf16",
        "gelu_quantize_fp8_static_bf16",
    ],
    "flashrt-fp8-ffn": [
        "fp8_gemm_bf16", "fp8_linear_bias_bf16", "fp8_linear_bias_gelu_quant_bf16",
        "fp8_gelu_mlp_bf16", "fp8_gelu_mlp_v2_bf16", "bf16_fp8_linear_bias_bf16",
        "bf16_fp8_gelu_mlp_bf16", "bf16_fp8_gelu_mlp_v2_bf16",
    ],
    "flashrt-fp8-swiglu-ffn": [
        "fp8_gemm_bf16", "fp8_swiglu_mlp_bf16", "fp8_geglu_mlp_bf16", "bf16_fp8_swiglu_mlp_bf16",
        "bf16_fp8_geglu_mlp_bf16", "silu_mul_merged_quantize_fp8_static_bf16",
        "gelu_mul_merged_quantize_fp8_static_bf16",
    ],
    # + two extensions beyond the seed (Hopper weight-only NVFP4 path; see the package CARD)
    "flashrt-smallm-gemm": [
        "nvfp4_w4a4_decode_matvec_bf16out", "nvfp4_weight_only_linear_bf16",
        "nvfp4_quantize_weight_bf16",
    ],
    "flashrt-nvfp4": ["nvfp4_sf_linear_to_swizzled", "nvfp4_sf_swizzled_bytes"],
    "flashrt-fused-quant": [
        "nvfp4_swizzled_scale_bytes", "silu_mul_quant_nvfp4_swizzled_bf16",
        "silu_mul_merged_quant_nvfp4_swizzled_bf16",
    ],
}
