"""Host-side pieces shared by the two kernel families of this package:
launch heuristics and the shape checks that several wrappers (and their fakes)
repeat. Checks raise ``RuntimeError`` before anything is allocated or launched.
"""

from typing import NamedTuple

import torch

from ._host import cdiv, check_int, check_shape, next_power_of_2, sm_count

BF16 = torch.bfloat16
FP16 = torch.float16
FP32 = torch.float32
I32 = torch.int32




def vector_config(n_vec, elems, device):
    """(BLOCK_V, num_warps) for kernels that give each program BLOCK_V head
    vectors of ``elems`` elements (padded width).

    Enough programs to cover the SMs twice, at most ~2k elements per program
    (16 per thread at 4 warps+), one warp per 256 elements: small (decode) calls
    get many one-vector programs (latency), large calls fat programs.
    """
    cap = max(1, 2048 // elems)
    want = cdiv(n_vec, 2 * sm_count(device, interpreted=1))
    block_v = min(cap, next_power_of_2(max(1, want)))
    num_warps = max(1, min(8, block_v * elems // 256))
    return block_v, num_warps


class WanConfig(NamedTuple):
    """Launch shape of the whole-hidden kernel: ``block_t`` token rows per program, each
    Q/K section's P = D/2 int32 pair words in ``n_chunks`` chunks of ``chunk`` (a power
    of two) words, ``early``: norm weights and RoPE tables loaded before the reduction,
    ``hold``: what the kernel keeps across the reduction (0 fp32 halves, 1 loaded words,
    2 nothing: the row is loaded again)."""
    block_t: int
    chunk: int
    n_chunks: int
    num_warps: int
    early: bool
    hold: int = 0


MAX_EXACT_CHUNKS = 8  # chunks a row may be split into (unrolled: code grows with it)


def exact_chunks(P):
    """(chunk, n_chunks) with P = n_chunks x chunk, chunk the largest power of two
    dividing P: a row in these chunks has no masked lanes (one padded block of
    next_power_of_2(P) wastes 25% at Wan's D = 3072 and 37.5% at 5120). None where P is
    a power of two (one chunk already) or would need more than MAX_EXACT_CHUNKS."""
    chunk = P & -P
    n = P // chunk
    return (chunk, n) if 1 < n <= MAX_EXACT_CHUNKS else None


def row_config(D, n_rows, device):
    """The whole-hidden kernel's launch rule (benchmarks/tune_qkv.py ``--wan``).

    One token per program at model widths (more per program measured slower), the row
    in one padded power-of-two chunk; about 32 int32 pairs per thread. Loads issued
    before the reduction pay off when the grid is about one wave (<= 12 programs per
    SM: ~1k tokens at D=3072) and cost registers beyond that; two variants, never one
    per count. (Rows in ``exact_chunks``, every hold mode: timed on H200 2026-12-04, not
    taken: the rule fastest or within 2% at six of eight rows, 8-warp forms 11-53% slower.)
    """
    block_p = next_power_of_2(max(1, D // 2))
    block_t = max(1, 1024 // block_p)
    num_warps = max(1, min(16, 2 * block_t * block_p // 1024))
    early = cdiv(n_rows, block_t) <= 12 * sm_count(device, interpreted=1)
    return WanConfig(block_t, block_p, 1, num_warps, early)


def check_packed3(x, name):
    """A 3-D non-empty packed tensor (B, S, width)."""
    if x.dim() != 3:
        raise RuntimeError(f"{name} must have 3 dimensions (B, S, width), got {x.dim()}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise RuntimeError(f"{name} must be non-empty (B > 0 and S > 0), got {tuple(x.shape)}")


def check_qkv_common(packed, name, wq, wq_name, wk, wk_name, heads, head_dim):
    """Whole-hidden (Wan) packed input: (B, S, 3*D), D = heads*head_dim, head_dim
    even, Q/K weights (D,)."""
    check_packed3(packed, name)
    check_int(heads, "heads", minimum=1)
    check_int(head_dim, "head_dim", minimum=1)
    if head_dim % 2 != 0:
        raise RuntimeError(f"head_dim must be even, got {head_dim}")
    D = heads * head_dim
    if packed.shape[2] != 3 * D:
        raise RuntimeError(
            f"{name} last dimension must be 3 * heads * head_dim = {3 * D}, got {packed.shape[2]}"
        )
    check_shape(wq, wq_name, (D,))
    check_shape(wk, wk_name, (D,))
    return D


def check_freqs(freqs_re, freqs_im, head_dim, rope_seq_len, seq_tokens):
    if freqs_re.dim() != 2 or freqs_re.shape[1] != head_dim // 2:
        raise RuntimeError(f"freqs_re must have shape (N, head_dim / 2 = {head_dim // 2}), "
                           f"got {tuple(freqs_re.shape)}")
    check_shape(freqs_im, "freqs_im", freqs_re.shape, "freqs_im shape must match freqs_re shape")
    check_int(rope_seq_len, "rope_seq_len", minimum=0)
    if rope_seq_len > seq_tokens:
        raise RuntimeError(f"rope_seq_len must be in [0, packed_qkv.shape[1]] "
                           f"(= {seq_tokens}), got {rope_seq_len}")
    if rope_seq_len > freqs_re.shape[0]:
        raise RuntimeError(f"rope_seq_len must be <= freqs_re.size(0) = "
                           f"{freqs_re.shape[0]}, got {rope_seq_len}")


def check_gqa_packed(packed, q_heads, kv_heads, head_dim):
    """(B, S, (QH + 2*KVH) * HD) packed GQA input; returns (B, S)."""
    check_packed3(packed, "packed_qkv")
    check_int(q_heads, "q_heads", minimum=1)
    check_int(kv_heads, "kv_heads", minimum=1)
    width = (q_heads + 2 * kv_heads) * head_dim
    if packed.shape[2] != width:
        raise RuntimeError(f"invalid QKV width: packed_qkv last dimension must be "
                           f"(q_heads + 2 * kv_heads) * head_dim = {width}, got {packed.shape[2]}")
    return packed.shape[0], packed.shape[1]
