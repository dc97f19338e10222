"""Input builders and the accuracy sweep of flashrt-vla-video.

Shared by the tests, `flashrt validate` and the benchmark's correctness gate.
Data: random normal activations (never zeros), weights near 1, RoPE tables
from real angles (positions x inverse frequencies), as models produce them.
"""

import torch

from flashrt_tools.validation import Case, device_for_run

HEAD_DIM = 128


def _randn(shape, gen, device, dtype, scale=1.0, shift=0.0):
    return (torch.randn(shape, generator=gen) * scale + shift).to(dtype=dtype, device=device)


def rope_angles(positions, head_dim, base=10000.0):
    """(len(positions), head_dim/2) angles pos * base^(-2i/head_dim), fp32."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    return (torch.as_tensor(positions, dtype=torch.float64)[:, None] * inv_freq[None, :]).float()


def decode_inputs(shape, device, gen, *, with_v=False, position=None):
    """Inputs of q_norm_rope_bf16 / k_norm_rope_v_cache_bf16 for x of ``shape``."""
    if position is None:
        position = int(torch.randint(0, 4096, (1,), generator=gen))
    angle = rope_angles([position], HEAD_DIM)[0]
    x = _randn(shape, gen, device, torch.bfloat16, scale=2.0)
    inputs = {
        "weight": _randn((HEAD_DIM,), gen, device, torch.bfloat16, scale=0.1, shift=1.0),
        "cos": angle.cos().to(torch.bfloat16).to(device),
        "sin": angle.sin().to(torch.bfloat16).to(device),
    }
    if with_v:
        return {"k": x, "v": _randn(shape, gen, device, torch.bfloat16, scale=2.0), **inputs}
    return {"q": x, **inputs}


def qkv_inputs(batch, tokens, heads, head_dim, device, gen, *, table_rows=None):
    """Inputs of qkv_split_norm_rope_bf16: packed (B, L, 3*D) + weights + fp32 tables."""
    D = heads * head_dim
    table_rows = tokens if table_rows is None else table_rows
    angles = rope_angles(range(table_rows), head_dim)
    return {
        "packed_qkv": _randn((batch, tokens, 3 * D), gen, device, torch.bfloat16, scale=2.0),
        "norm_q_weight": _randn((D,), gen, device, torch.bfloat16, scale=0.1, shift=1.0),
        "norm_k_weight": _randn((D,), gen, device, torch.bfloat16, scale=0.1, shift=1.0),
        "freqs_re": angles.cos().to(device),
        "freqs_im": angles.sin().to(device),
    }


def _decode_case(function, shape, with_v):
    def make(device, gen):
        return (), decode_inputs(shape, device, gen, with_v=with_v)

    formats = ("bf16", "exact") if with_v else ("bf16",)
    return Case(function, "x".join(map(str, shape)), make, formats)


def _qkv_case(batch, tokens, heads, head_dim, *, table_rows=None, seq_len=None):
    def make(device, gen):
        kw = qkv_inputs(batch, tokens, heads, head_dim, device, gen, table_rows=table_rows)
        kw.update(heads=heads, head_dim=head_dim)
        if seq_len is not None:
            kw["seq_len"] = seq_len
        return (), kw

    label = f"B={batch},L={tokens},H={heads},hd={head_dim}"
    if seq_len is not None:
        label += f",seq_len={seq_len}"
    return Case("qkv_split_norm_rope_bf16", label, make, ("bf16", "bf16"))


def _sweep(on_gpu):
    """Ragged sizes everywhere; Wan shapes (24/40 heads x 128) where the device is fast."""
    decode_shapes = [(1, 128), (3, 128), (2, 5, 128), (17, 128)]
    qkv = [
        _qkv_case(1, 1, 2, 8),
        _qkv_case(2, 7, 3, 16),
        _qkv_case(1, 9, 2, 6, table_rows=12, seq_len=5),  # head_dim not a power of two
        _qkv_case(1, 4, 24, 128, table_rows=8),  # Wan2.2 TI2V-5B width
        _qkv_case(1, 2, 40, 128, table_rows=4),  # Wan2.2 A14B width (wide-row load order)
    ]
    if on_gpu:
        decode_shapes += [(16, 24, 128), (1, 40, 128), (4, 16, 48, 128)]
        qkv += [_qkv_case(1, 256, 24, 128), _qkv_case(1, 1024, 40, 128),
                _qkv_case(2, 333, 24, 128, seq_len=300)]
    cases = []
    for shape in decode_shapes:
        cases.append(_decode_case("q_norm_rope_bf16", shape, with_v=False))
        cases.append(_decode_case("k_norm_rope_v_cache_bf16", shape, with_v=True))
    return cases + qkv


CASES = _sweep(on_gpu=device_for_run().type == "cuda")
