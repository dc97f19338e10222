"""flashrt-vla-video: attention post-process kernels for VLA / video-diffusion models.

Q/K RMSNorm + RoPE in one launch: two decode helpers (head_dim 128, rotate-half
RoPE) and the Wan-style packed-QKV split with whole-hidden RMSNorm and
interleaved RoPE. Triton kernels; CUDA, or CPU through the Triton interpreter.
"""

from .postprocess import k_norm_rope_v_cache_bf16, q_norm_rope_bf16, qkv_split_norm_rope_bf16

__all__ = ["k_norm_rope_v_cache_bf16", "q_norm_rope_bf16", "qkv_split_norm_rope_bf16"]
