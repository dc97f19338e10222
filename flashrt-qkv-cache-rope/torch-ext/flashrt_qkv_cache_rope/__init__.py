"""flashrt-qkv-cache-rope: QKV post-process kernels for attention.

Split packed QKV, optional bias, optional Q/K RMSNorm (whole-hidden Wan style
or per-128-head Qwen style), RoPE in three conventions (rotate-half with half
or full-width tables, interleaved pairs), and direct writes into attention
workspaces or KV caches (host offset or device-side position for CUDA-graph
replay). Triton kernels; CUDA, or CPU through the Triton interpreter.
"""

from .norm_rope import (decode_k_norm_rope_kvwrite_bf16, decode_k_norm_rope_kvwrite_devpos_bf16,
                        decode_q_norm_rope_stage_bf16, qk_norm_rope_strided_bf16,
                        qkv_split_bias_norm_rope_v_bf16, qkv_split_bias_norm_rope_v_cat_bf16,
                        qkv_split_joint3_cat_bf16, qkv_split_norm_rope_bf16,
                        qkv_split_per_head_norm_rope_bf16)
from .split_rope import (qkv_split_bf16, qkv_split_bias_rope_bf16, qkv_split_bias_rope_fp16,
                         qkv_split_rope_kvcache_bf16, qkv_split_rope_kvcache_fp16)

__all__ = [
    "decode_q_norm_rope_stage_bf16", "decode_k_norm_rope_kvwrite_bf16",
    "decode_k_norm_rope_kvwrite_devpos_bf16", "qkv_split_per_head_norm_rope_bf16",
    "qkv_split_bias_rope_bf16", "qkv_split_bias_rope_fp16", "qkv_split_bf16",
    "qkv_split_rope_kvcache_bf16", "qkv_split_rope_kvcache_fp16",
    "qk_norm_rope_strided_bf16", "qkv_split_norm_rope_bf16",
    "qkv_split_bias_norm_rope_v_bf16", "qkv_split_bias_norm_rope_v_cat_bf16",
    "qkv_split_joint3_cat_bf16",
]
