"""Input builders and the accuracy sweep of flashrt-qkv-cache-rope.

Shared by the tests, `flashrt validate` and the benchmarks' correctness gate.
Data: random normal activations (never zeros), weights near 1, small biases,
RoPE tables from real angles (positions x inverse frequencies). Caches and cat
workspaces start filled with random values: the reference keeps their other
rows, so every comparison also covers the rows that must stay untouched.

FP16 outputs are judged like bf16 ones: every element within one fp16 ulp
(format ``fp16``).
"""

import torch

from flashrt_tools.validation import Case, device_for_run

HD = 128


def randn(shape, gen, device, dtype, scale=1.0, shift=0.0):
    return (torch.randn(shape, generator=gen) * scale + shift).to(dtype=dtype, device=device)


def rope_angles(positions, head_dim, base=10000.0):
    """(len(positions), head_dim/2) angles pos * base^(-2i/head_dim), fp32."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    return (torch.as_tensor(list(positions), dtype=torch.float64)[:, None]
            * inv_freq[None, :]).float()


def _weight(n, gen, device):
    return randn((n,), gen, device, torch.bfloat16, scale=0.1, shift=1.0)


# --- (f) decode -----------------------------------------------------------------------------------


def decode_inputs(n_heads, device, gen, *, kv=False):
    pos = int(torch.randint(0, 4096, (1,), generator=gen))
    angle = rope_angles([pos], HD)[0]
    x = randn((n_heads, HD), gen, device, torch.bfloat16, scale=2.0)
    tabs = {"cos": angle.cos().to(torch.bfloat16).to(device),
            "sin": angle.sin().to(torch.bfloat16).to(device)}
    if kv:
        return {"k_pre": x, "v_pre": randn((n_heads, HD), gen, device, torch.bfloat16, scale=2.0),
                "k_norm_weight": _weight(HD, gen, device), **tabs}
    return {"q_pre": x, "q_norm_weight": _weight(HD, gen, device), **tabs}


def devpos_inputs(n_kv, max_seq, pos, device, gen):
    kw = decode_inputs(n_kv, device, gen, kv=True)
    kw["cur_pos"] = torch.tensor([pos], dtype=torch.int32, device=device)
    kw["k_cache"] = randn((max_seq, n_kv, HD), gen, device, torch.bfloat16)
    kw["v_cache"] = randn((max_seq, n_kv, HD), gen, device, torch.bfloat16)
    return kw


# --- (c) per-head GQA / strided ---------------------------------------------------------------------


def _full_tables(lead, gen, device):
    """Full-width rotate-half tables [c, c] per row, as HF/Qwen build them, for random positions."""
    n = 1
    for s in lead:
        n *= s
    pos = torch.randint(0, 4096, (n,), generator=gen).tolist()
    ang = rope_angles(pos, HD)
    ang = torch.cat([ang, ang], dim=-1).reshape(*lead, HD)
    return ang.cos().to(torch.bfloat16).to(device), ang.sin().to(torch.bfloat16).to(device)


def per_head_inputs(B, S, QH, KVH, device, gen):
    cos, sin = _full_tables((B, S), gen, device)
    return {"packed_qkv": randn((B, S, (QH + 2 * KVH) * HD), gen, device, torch.bfloat16, 2.0),
            "q_norm_weight": _weight(HD, gen, device), "k_norm_weight": _weight(HD, gen, device),
            "cos": cos, "sin": sin, "q_heads": QH, "kv_heads": KVH}


def strided_inputs(rows, QH, KH, Wq, Wk, device, gen):
    cos, sin = _full_tables((rows,), gen, device)
    return {"q_in": randn((rows, Wq), gen, device, torch.bfloat16, 2.0),
            "k_in": randn((rows, Wk), gen, device, torch.bfloat16, 2.0),
            "q_weight": _weight(HD, gen, device), "k_weight": _weight(HD, gen, device),
            "cos": cos, "sin": sin, "q_heads": QH, "k_heads": KH}


# --- (b) whole-hidden ---------------------------------------------------------------------------------


def wan_inputs(B, S, heads, head_dim, device, gen, *, bias=False, table_rows=None):
    D = heads * head_dim
    angles = rope_angles(range(S if table_rows is None else table_rows), head_dim)
    kw = {"packed_qkv": randn((B, S, 3 * D), gen, device, torch.bfloat16, 2.0)}
    if bias:
        kw["qkv_bias"] = randn((3 * D,), gen, device, torch.bfloat16, 0.1)
    kw.update(norm_q_weight=_weight(D, gen, device), norm_k_weight=_weight(D, gen, device),
              freqs_re=angles.cos().to(device), freqs_im=angles.sin().to(device),
              heads=heads, head_dim=head_dim)
    return kw


def cat_inputs(B, S, heads, head_dim, offset, total, device, gen):
    kw = wan_inputs(B, S, heads, head_dim, device, gen, bias=True)
    kw["video_offset"] = offset
    for name in ("q_cat_out", "k_cat_out", "v_cat_out"):
        kw[name] = randn((B, total, heads, head_dim), gen, device, torch.bfloat16)
    return kw


def joint3_inputs(L_v, L_a, L_u, heads, head_dim, device, gen, B=1):
    D = heads * head_dim
    angles = rope_angles(range(L_v), head_dim)
    kw = {"packed_v": randn((B, L_v, 3 * D), gen, device, torch.bfloat16, 2.0),
          "qkv_v_bias": randn((3 * D,), gen, device, torch.bfloat16, 0.1),
          "norm_v_q_weight": _weight(D, gen, device), "norm_v_k_weight": _weight(D, gen, device),
          "freqs_re": angles.cos().to(device), "freqs_im": angles.sin().to(device)}
    for seg, L in (("a", L_a), ("u", L_u)):
        kw[f"packed_{seg}"] = randn((B, L, 3 * D), gen, device, torch.bfloat16, 2.0)
        kw[f"norm_{seg}_q_weight"] = _weight(D, gen, device)
        kw[f"norm_{seg}_k_weight"] = _weight(D, gen, device)
    kw.update(heads=heads, head_dim=head_dim)
    for name in ("q_cat_out", "k_cat_out", "v_cat_out"):
        kw[name] = randn((B, L_v + L_a + L_u, heads, head_dim), gen, device, torch.bfloat16)
    return kw


# --- (a) split, (d) bias + RoPE, (e) KV cache ----------------------------------------------------------


def split_inputs(B, S, heads, head_dim, device, gen):
    return {"packed_qkv": randn((B, S, 3 * heads * head_dim), gen, device, torch.bfloat16, 2.0),
            "heads": heads, "head_dim": head_dim}


def bias_rope_inputs(B, S, QH, KVH, hd, device, gen, *, full_table=False):
    W = (QH + 2 * KVH) * hd
    pos = torch.randint(0, 4096, (B * S,), generator=gen).tolist()
    ang = rope_angles(pos, hd).reshape(B, S, hd // 2)
    if full_table:
        ang = torch.cat([ang, ang], dim=-1)
    return {"packed_qkv": randn((B, S, W), gen, device, torch.bfloat16, 2.0),
            "qkv_bias": randn((W,), gen, device, torch.bfloat16, 0.1),
            "cos": ang.cos().to(device), "sin": ang.sin().to(device),
            "q_heads": QH, "kv_heads": KVH, "head_dim": hd}


def kvcache_inputs(B, S, QH, KVH, hd, offset, max_s, device, gen, *, dtype=torch.bfloat16,
                   table_rows=None):
    """The rope table is pre-sliced by the caller: row s = position offset + s."""
    W = (QH + 2 * KVH) * hd
    rows = S if table_rows is None else table_rows
    ang = rope_angles(range(offset, offset + rows), hd)
    rope = torch.stack([ang.cos(), ang.sin()], dim=-1).reshape(rows, hd)
    return {"packed_qkv": randn((B, S, W), gen, device, dtype, 2.0),
            "rope": rope.to(dtype=dtype, device=device),
            "q_heads": QH, "kv_heads": KVH, "head_dim": hd, "cache_offset": offset,
            "k_cache": randn((B, max_s, KVH, hd), gen, device, dtype),
            "v_cache": randn((B, max_s, KVH, hd), gen, device, dtype)}


# --- the sweep ------------------------------------------------------------------------------------------


def _case(function, label, builder, formats, compare_kwargs=None, **extra):
    def make(device, gen):
        kw = builder(device, gen)
        kw.update(extra)
        return (), kw
    return Case(function, label, make, formats, compare_kwargs or {})


def _sweep(on_gpu):
    """Ragged sizes (1, odd, non-power-of-two widths, just over a block) on CPU; model
    shapes (PI0.5, GROOT/N1.7, Qwen3-VL, LingBot, Wan2.2, Cosmos3-Edge) on the GPU."""
    c = []
    decode_heads = [1, 3, 17] + ([24, 48] if on_gpu else [])
    for n in decode_heads:
        c.append(_case("decode_q_norm_rope_stage_bf16", f"heads={n}",
                       lambda d, g, n=n: decode_inputs(n, d, g), ("bf16",)))
        c.append(_case("decode_k_norm_rope_kvwrite_bf16", f"kv={n}",
                       lambda d, g, n=n: decode_inputs(n, d, g, kv=True), ("bf16", "exact")))
    for n, max_s, pos in [(1, 8, 3), (3, 5, 4)] + ([(8, 1024, 577)] if on_gpu else []):
        c.append(_case("decode_k_norm_rope_kvwrite_devpos_bf16", f"kv={n},max={max_s},pos={pos}",
                       lambda d, g, a=(n, max_s, pos): devpos_inputs(*a, d, g), ("bf16", "exact")))

    per_head = [(1, 1, 1, 1), (2, 3, 3, 1), (1, 5, 4, 2)]
    per_head += [(1, 277, 16, 8), (2, 51, 16, 2)] if on_gpu else []  # N1.7 / GROOT, Cosmos-like
    for B, S, QH, KVH in per_head:
        c.append(_case("qkv_split_per_head_norm_rope_bf16", f"B={B},S={S},QH={QH},KVH={KVH}",
                       lambda d, g, a=(B, S, QH, KVH): per_head_inputs(*a, d, g),
                       ("bf16", "bf16", "exact")))
    strided = [(3, 2, 1, 2 * HD + 40, HD + 8), (1, 1, 1, HD, HD)]
    strided += [(51, 16, 2, 16 * HD + 256, 2 * HD + 128)] if on_gpu else []  # Cosmos3-Edge
    for rows, QH, KH, Wq, Wk in strided:
        c.append(_case("qk_norm_rope_strided_bf16", f"rows={rows},QH={QH},KH={KH},Wq={Wq},Wk={Wk}",
                       lambda d, g, a=(rows, QH, KH, Wq, Wk): strided_inputs(*a, d, g),
                       ("bf16", "bf16")))

    wan = [(1, 1, 2, 8, None), (2, 7, 3, 16, 5), (1, 9, 2, 6, 4), (1, 3, 24, 128, None)]
    wan += [(1, 1024, 24, 128, None), (1, 333, 40, 128, 300), (1, 512, 16, 128, None)] \
        if on_gpu else []
    for B, S, H, hd, rl in wan:
        extra = {} if rl is None else {"rope_seq_len": rl}
        label = f"B={B},S={S},H={H},hd={hd}" + ("" if rl is None else f",rope_seq_len={rl}")
        c.append(_case("qkv_split_norm_rope_bf16", label,
                       lambda d, g, a=(B, S, H, hd): wan_inputs(*a, d, g), ("bf16", "bf16"),
                       **extra))
        c.append(_case("qkv_split_bias_norm_rope_v_bf16", label,
                       lambda d, g, a=(B, S, H, hd): wan_inputs(*a, d, g, bias=True),
                       ("bf16", "bf16", "bf16"), **extra))
    cat = [(2, 5, 3, 8, 3, 12, None), (1, 4, 24, 128, 1, 6, 2)]
    cat += [(1, 2520, 24, 128, 3, 2528, None)] if on_gpu else []
    for B, S, H, hd, off, total, rl in cat:
        extra = {} if rl is None else {"rope_seq_len": rl}
        c.append(_case("qkv_split_bias_norm_rope_v_cat_bf16",
                       f"B={B},S={S},H={H},hd={hd},off={off},total={total}",
                       lambda d, g, a=(B, S, H, hd, off, total): cat_inputs(*a, d, g),
                       ("bf16", "bf16", "bf16"), **extra))
    joint3 = [(6, 3, 2, 2, 8, 4), (4, 2, 1, 24, 128, None)]
    joint3 += [(2520, 16, 16, 24, 128, None), (64, 8, 4, 8, 128, 60)] if on_gpu else []
    for L_v, L_a, L_u, H, hd, rl in joint3:
        extra = {} if rl is None else {"rope_seq_len": rl, "eps_a": 1e-5}
        c.append(_case("qkv_split_joint3_cat_bf16", f"L={L_v}/{L_a}/{L_u},H={H},hd={hd}",
                       lambda d, g, a=(L_v, L_a, L_u, H, hd): joint3_inputs(*a, d, g),
                       ("bf16", "bf16", "bf16"), **extra))

    split = [(1, 1, 1, 2), (2, 5, 3, 72), (1, 3, 2, 7)]
    split += [(2, 256, 16, 72), (1, 2520, 24, 128)] if on_gpu else []
    for B, S, H, hd in split:
        c.append(_case("qkv_split_bf16", f"B={B},S={S},H={H},hd={hd}",
                       lambda d, g, a=(B, S, H, hd): split_inputs(*a, d, g),
                       ("exact", "exact", "exact")))
    bias = [(1, 3, 2, 1, 64, False), (2, 5, 3, 1, 72, True), (1, 2, 2, 2, 80, False),
            (1, 4, 1, 1, 6, True)]
    bias += [(1, 277, 16, 16, 64, False), (1, 1024, 16, 16, 72, True),
             (1, 277, 32, 8, 128, False)] if on_gpu else []
    for B, S, QH, KVH, hd, full in bias:
        label = f"B={B},S={S},QH={QH},KVH={KVH},hd={hd},{'full' if full else 'half'}"
        build = (lambda d, g, a=(B, S, QH, KVH, hd), f=full: bias_rope_inputs(*a, d, g,
                                                                               full_table=f))
        c.append(_case("qkv_split_bias_rope_bf16", label, build, ("bf16",) * 3))
        c.append(_case("qkv_split_bias_rope_fp16", label, build, ("fp16",) * 3))
    kv = [(1, 3, 2, 1, 16, 2, 8), (2, 4, 3, 2, 10, 0, 5), (1, 2, 8, 1, 256, 5, 9)]
    kv += [(1, 10, 8, 1, 256, 0, 10), (1, 50, 8, 1, 256, 0, 64), (2, 16, 8, 2, 128, 2, 21),
           (1, 560, 8, 1, 256, 0, 560)] if on_gpu else []  # last: PI0.5 encoder prefill
    for B, S, QH, KVH, hd, off, mx in kv:
        label = f"B={B},S={S},QH={QH},KVH={KVH},hd={hd},off={off},max={mx}"
        c.append(_case("qkv_split_rope_kvcache_bf16", label,
                       lambda d, g, a=(B, S, QH, KVH, hd, off, mx): kvcache_inputs(*a, d, g),
                       ("bf16", "bf16", "exact")))
        c.append(_case("qkv_split_rope_kvcache_fp16", label,
                       lambda d, g, a=(B, S, QH, KVH, hd, off, mx):
                       kvcache_inputs(*a, d, g, dtype=torch.float16),
                       ("fp16", "fp16", "exact")))

    def devpos_fp16(device, gen, S=1, pos=17, mx=24):
        kw = kvcache_inputs(1, S, 4, 2, 16, 3, mx, device, gen, dtype=torch.float16)
        kw["device_position"] = torch.tensor([pos], dtype=torch.int32, device=device)
        return kw
    c.append(_case("qkv_split_rope_kvcache_fp16", "devpos S=1,pos=17,off=3,max=24", devpos_fp16,
                   ("fp16", "fp16", "exact")))
    c.append(_case("qkv_split_rope_kvcache_fp16", "devpos S=3 straddling the end",
                   lambda d, g: devpos_fp16(d, g, S=3, pos=19, mx=24),
                   ("fp16", "fp16", "exact")))
    return c


CASES = _sweep(on_gpu=device_for_run().type == "cuda")
