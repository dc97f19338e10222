"""Tests of flashrt-qkv-cache-rope, loaded through `kernels` from a fresh build.

On CPU the Triton kernels run in the interpreter (small shapes); on a GPU the
same tests run natively, plus model-shape cases, CUDA-graph replay and compile
with Inductor. Outputs are poisoned first so unwritten elements fail; caches
and cat workspaces are poisoned to prove every other row stays untouched.
"""

import importlib

import pytest
import torch

from flashrt_tools.repo import ROOT, load_file
from flashrt_tools.tolerance import compare
from flashrt_tools.validation import reference_of, run_case

cases = load_file(ROOT / "flashrt-qkv-cache-rope" / "tests" / "cases.py",
                  "_flashrt_cases_flashrt_qkv_cache_rope")

SEED = 1234


def _gen(seed=SEED):
    return torch.Generator().manual_seed(seed)


def _bits(t):
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32}[t.element_size()]).clone()


def _fresh(kw):
    """Tensor arguments cloned (in-place outputs start from the same values)."""
    return {k: (v.clone() if torch.is_tensor(v) else v) for k, v in kw.items()}


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _nan_like(t):
    return torch.full_like(t, float("nan"))


def _ops(kernel):
    return importlib.import_module(f"{kernel.__name__}._ops").ops


def _assert_close(fmt, got, want):
    if got.dtype == torch.float16 and fmt == "bf16":
        fmt = "fp16"
    v = compare(fmt, got, want)
    assert v.ok, v.message


# --- accuracy: every output of every function --------------------------------------------------


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_matches_reference(kernel, device, case):
    verdicts, _ = run_case(kernel, reference_of(kernel), case, device, seed=SEED)
    for v in verdicts:
        assert v.ok, f"{case.id}: {v.message}"


# --- out buffers: written completely and returned as the same objects ----------------------------

def _optional_out_calls(device):
    """(function, kwargs without outputs, {out name: shape, dtype})."""
    g = _gen()
    bf, h = torch.bfloat16, torch.float16
    per = cases.per_head_inputs(2, 3, 3, 1, device, g)
    strided = cases.strided_inputs(3, 2, 1, 2 * 128 + 40, 128 + 8, device, g)
    wan = cases.wan_inputs(2, 5, 3, 8, device, g)
    wanb = cases.wan_inputs(2, 5, 3, 8, device, g, bias=True)
    br = cases.bias_rope_inputs(1, 3, 2, 1, 72, device, g)
    return [
        ("decode_q_norm_rope_stage_bf16", cases.decode_inputs(5, device, g),
         {"q_out": ((5, 128), bf)}),
        ("decode_k_norm_rope_kvwrite_bf16", cases.decode_inputs(3, device, g, kv=True),
         {"k_cache_dst": ((3, 128), bf), "v_cache_dst": ((3, 128), bf)}),
        ("qkv_split_per_head_norm_rope_bf16", per,
         {"q_out": ((2, 3, 3, 128), bf), "k_out": ((2, 3, 1, 128), bf),
          "v_out": ((2, 3, 1, 128), bf)}),
        ("qk_norm_rope_strided_bf16", strided,
         {"q_out": ((3, 2, 128), bf), "k_out": ((3, 1, 128), bf)}),
        ("qkv_split_norm_rope_bf16", wan, {"q_out": ((2, 5, 3, 8), bf), "k_out": ((2, 5, 3, 8), bf)}),
        ("qkv_split_bias_norm_rope_v_bf16", wanb,
         {n: ((2, 5, 3, 8), bf) for n in ("q_out", "k_out", "v_out")}),
        ("qkv_split_bf16", cases.split_inputs(2, 3, 3, 5, device, g),
         {n: ((2, 3, 3, 5), bf) for n in ("q_out", "k_out", "v_out")}),
        ("qkv_split_bias_rope_bf16", br,
         {"q_out": ((1, 3, 2, 72), bf), "k_out": ((1, 3, 1, 72), bf), "v_out": ((1, 3, 1, 72), bf)}),
        ("qkv_split_bias_rope_fp16", br,
         {"q_out": ((1, 3, 2, 72), h), "k_out": ((1, 3, 1, 72), h), "v_out": ((1, 3, 1, 72), h)}),
    ]


@pytest.mark.parametrize("index", range(9))
def test_out_buffers_written_and_returned(kernel, device, index):
    name, kw, outs = _optional_out_calls(device)[index]
    bufs = {o: torch.full(shape, float("nan"), dtype=dt, device=device)
            for o, (shape, dt) in outs.items()}
    got = _as_tuple(getattr(kernel, name)(**kw, **bufs))
    want = _as_tuple(getattr(reference_of(kernel), name)(**kw))
    assert len(got) == len(bufs) == len(want)
    for g, b, w in zip(got, bufs.values(), want):
        assert g is b
        if name in ("qkv_split_bf16",) or (name.startswith("decode_k") and g is got[1]) or \
                (name == "qkv_split_per_head_norm_rope_bf16" and g is got[2]):
            assert torch.equal(_bits(g), _bits(w))
        else:
            _assert_close("bf16", g, w)
    # allocated outputs equal the passed-buffer results
    again = _as_tuple(getattr(kernel, name)(**kw))
    for a, g in zip(again, got):
        assert torch.equal(_bits(a), _bits(g))


@pytest.mark.parametrize("name", ["qkv_split_bias_rope_fp16", "qkv_split_rope_kvcache_fp16"])
def test_fp16_outputs_within_one_ulp(kernel, device, name):
    if name == "qkv_split_bias_rope_fp16":
        kw = cases.bias_rope_inputs(2, 5, 3, 2, 80, device, _gen(), full_table=True)
    else:
        kw = cases.kvcache_inputs(2, 4, 3, 2, 16, 1, 6, device, _gen(), dtype=torch.float16)
    got = getattr(kernel, name)(**_fresh(kw))
    want = getattr(reference_of(kernel), name)(**kw)
    for g, w in zip(got, want):
        _assert_close("fp16", g, w)


# --- RoPE gating, V handling ---------------------------------------------------------------------


@pytest.mark.parametrize("rope_seq_len", [0, 1, 6, 7])
def test_rope_seq_len_gates_rope(kernel, device, rope_seq_len):
    B, S, H, hd = 2, 7, 3, 16
    kw = cases.wan_inputs(B, S, H, hd, device, _gen(), bias=True)
    got = kernel.qkv_split_bias_norm_rope_v_bf16(**kw, rope_seq_len=rope_seq_len)
    want = reference_of(kernel).qkv_split_bias_norm_rope_v_bf16(**kw, rope_seq_len=rope_seq_len)
    for g, w in zip(got, want):
        _assert_close("bf16", g, w)
    # tokens >= rope_seq_len are normalized only: equal to a call with rope_seq_len = 0
    plain = kernel.qkv_split_bias_norm_rope_v_bf16(**kw, rope_seq_len=0)
    for g, p in zip(got[:2], plain[:2]):
        assert torch.equal(_bits(g[:, rope_seq_len:]), _bits(p[:, rope_seq_len:]))


def test_norm_rope_ignores_v_section(kernel, device):
    kw = cases.wan_inputs(1, 5, 2, 8, device, _gen())
    first = [t.clone() for t in kernel.qkv_split_norm_rope_bf16(**kw)]
    kw["packed_qkv"][..., 2 * 16:] = 1e4
    for a, b in zip(first, kernel.qkv_split_norm_rope_bf16(**kw)):
        assert torch.equal(_bits(a), _bits(b))


def test_bias_rope_full_table_reads_first_half_only(kernel, device):
    kw = cases.bias_rope_inputs(1, 3, 2, 1, 16, device, _gen(), full_table=True)
    first = [t.clone() for t in kernel.qkv_split_bias_rope_bf16(**kw)]
    kw["cos"][..., 8:] = 123.0
    kw["sin"][..., 8:] = -55.0
    for a, b in zip(first, kernel.qkv_split_bias_rope_bf16(**kw)):
        assert torch.equal(_bits(a), _bits(b))


# inputs(device, gen) of every function with an ``eps`` argument except joint3 (whose three
# eps have their own tests): the decode, per-head and strided head kernel, the whole-hidden
# kernel with and without bias, and its cat twin
NORM_INPUTS = {
    "decode_q_norm_rope_stage_bf16": lambda d, g: cases.decode_inputs(3, d, g),
    "decode_k_norm_rope_kvwrite_bf16": lambda d, g: cases.decode_inputs(3, d, g, kv=True),
    "decode_k_norm_rope_kvwrite_devpos_bf16": lambda d, g: cases.devpos_inputs(2, 5, 3, d, g),
    "qkv_split_per_head_norm_rope_bf16": lambda d, g: cases.per_head_inputs(2, 3, 3, 1, d, g),
    "qk_norm_rope_strided_bf16": lambda d, g: cases.strided_inputs(3, 2, 1, 2 * 128 + 40,
                                                                   128 + 8, d, g),
    "qkv_split_norm_rope_bf16": lambda d, g: cases.wan_inputs(2, 5, 3, 8, d, g),
    "qkv_split_bias_norm_rope_v_bf16": lambda d, g: cases.wan_inputs(2, 5, 3, 8, d, g,
                                                                     bias=True),
    "qkv_split_bias_norm_rope_v_cat_bf16": lambda d, g: cases.cat_inputs(2, 5, 3, 8, 3, 12,
                                                                         d, g),
}


@pytest.mark.parametrize("name", NORM_INPUTS)
def test_eps_reaches_the_kernel(kernel, device, name):
    """A non-default eps (3.0, of the order of the inputs' mean square, 4) is the one the
    kernel adds: results equal the reference at that eps, and differ from the default's."""
    kw = NORM_INPUTS[name](device, _gen())
    got = _as_tuple(getattr(kernel, name)(**_fresh(kw), eps=3.0))
    want = _as_tuple(getattr(reference_of(kernel), name)(**_fresh(kw), eps=3.0))
    default = _as_tuple(getattr(kernel, name)(**_fresh(kw)))
    for g, w in zip(got, want):
        _assert_close("bf16", g, w)
    assert not torch.equal(_bits(got[0]), _bits(default[0]))


@pytest.mark.parametrize("name", ["qkv_split_per_head_norm_rope_bf16", "qk_norm_rope_strided_bf16"])
def test_full_width_tables_use_every_entry(kernel, device, name):
    """ROPE_HALF_FULL: output element i uses cos[i] and sin[i]. The cases' tables are HF/Qwen's
    [c, c] (both halves equal), which cannot tell the second half from the first: here every
    entry is its own angle."""
    g = _gen()
    kw = NORM_INPUTS[name](device, g)
    angle = torch.rand(kw["cos"].shape, generator=g) * 6.2831853
    kw["cos"] = angle.cos().to(torch.bfloat16).to(device)
    kw["sin"] = angle.sin().to(torch.bfloat16).to(device)
    got = getattr(kernel, name)(**kw)
    want = getattr(reference_of(kernel), name)(**kw)
    for g_, w in zip(got[:2], want[:2]):
        _assert_close("bf16", g_, w)
    # the same call with the first halves duplicated gives other bits in the second half
    dup = dict(kw, cos=torch.cat([kw["cos"][..., :64]] * 2, -1),
               sin=torch.cat([kw["sin"][..., :64]] * 2, -1))
    other = getattr(kernel, name)(**dup)
    assert not torch.equal(_bits(other[0][..., 64:]), _bits(got[0][..., 64:]))


# --- whole-hidden (Wan) kernel: launch modes ------------------------------------------------------


def _wan_modes(kernel, D, n_rows, device):
    """(name, WanConfig) of every chunking x hold x early-load mode around the rule."""
    common = importlib.import_module(f"{kernel.__name__}._common")
    rule = common.row_config(D, n_rows, device)
    split = [(rule.chunk, 1)] + [c for c in [common.exact_chunks(D // 2)] if c]
    return [(f"chunk{ch}x{n}-hold{h}-early{int(e)}", rule._replace(chunk=ch, n_chunks=n,
                                                                   hold=h, early=e))
            for ch, n in split for h in (0, 1, 2) for e in (False, True)]


@pytest.mark.parametrize("bias", [False, True], ids=["norm_rope", "bias_norm_rope_v"])
@pytest.mark.parametrize("shape", [(2, 5, 3, 8), pytest.param((1, 9, 24, 128), marks=pytest.mark.gpu),
                                   pytest.param((1, 9, 40, 128), marks=pytest.mark.gpu)],
                         ids=lambda s: "B{}xT{}xH{}xhd{}".format(*s))
def test_wan_launch_modes(kernel, device, monkeypatch, bias, shape):
    """The whole-hidden kernel's launch modes: a section's words in one padded chunk or
    in exact chunks (D = 24: 3 x 4 words; Wan's 3072 / 5120: 3 / 5 x 512), fp32 halves,
    loaded words or nothing held across the reduction, tables loaded before or after it.
    Hold and table placement never change the bits of a chunking; every mode matches
    the reference. (Exact chunks sum the squares chunk by chunk: another order.)"""
    norm_rope = importlib.import_module(f"{kernel.__name__}.norm_rope")
    B, T, H, hd = shape
    kw = cases.wan_inputs(B, T, H, hd, device, _gen(), bias=bias)
    fn = "qkv_split_bias_norm_rope_v_bf16" if bias else "qkv_split_norm_rope_bf16"
    want = getattr(reference_of(kernel), fn)(**kw, rope_seq_len=T - 2)
    modes = _wan_modes(kernel, H * hd, B * T, device)
    assert len(modes) == 12  # both chunkings exist at these widths
    first = {}
    for name, cfg in modes:
        monkeypatch.setattr(norm_rope, "row_config", lambda D, n, dev, cfg=cfg: cfg)
        got = getattr(kernel, fn)(**kw, rope_seq_len=T - 2)
        for g, w in zip(got, want):
            _assert_close("bf16", g, w)
        bits = [_bits(g) for g in got]
        ref = first.setdefault(cfg.n_chunks, bits)
        assert all(torch.equal(a, b) for a, b in zip(bits, ref)), name


@pytest.mark.parametrize("lengths,B", [((5, 3, 2), 1), ((9, 1, 6), 1), ((5, 3, 2), 2)],
                         ids=["5-3-2", "9-1-6", "5-3-2-batch2"])
def test_joint3_one_launch_equals_three(kernel, device, monkeypatch, lengths, B):
    """The three joint3 segments in one launch (``_wan_joint3_kernel``, taken when
    ``JOINT3_ONE_LAUNCH`` is set) give the bits of one launch per segment, every row of
    the workspaces written (poisoned first) and equal to the reference."""
    norm_rope = importlib.import_module(f"{kernel.__name__}.norm_rope")
    L_v, L_a, L_u = lengths
    kw = cases.joint3_inputs(L_v, L_a, L_u, 2, 8, device, _gen(), B=B)
    extra = dict(rope_seq_len=L_v - 1, eps_a=0.5, eps_u=3.0)  # eps that move the bits
    outs = []
    for one_launch in (False, True):
        monkeypatch.setattr(norm_rope, "JOINT3_ONE_LAUNCH", one_launch)
        for name in ("q_cat_out", "k_cat_out", "v_cat_out"):
            kw[name] = _nan_like(kw[name])
        outs.append([_bits(c) for c in kernel.qkv_split_joint3_cat_bf16(**kw, **extra)])
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    want = reference_of(kernel).qkv_split_joint3_cat_bf16(**kw, **extra)
    for g, w in zip(outs[1], want):
        _assert_close("bf16", g.view(torch.bfloat16), w)


def test_wan_exact_chunks(kernel):
    common = importlib.import_module(f"{kernel.__name__}._common")
    assert common.exact_chunks(1536) == (512, 3)  # Wan2.2-TI2V-5B, D = 3072
    assert common.exact_chunks(2560) == (512, 5)  # Wan2.2-A14B, D = 5120
    assert common.exact_chunks(12) == (4, 3)
    assert common.exact_chunks(2048) is None  # a power of two: one chunk already
    assert common.exact_chunks(4608) is None  # 9 x 512: over MAX_EXACT_CHUNKS
    assert common.exact_chunks(63) is None


# --- caches and workspaces: other rows untouched, device positions -------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_kvcache_other_rows_untouched(kernel, device, dtype):
    B, S, QH, KVH, hd, off, mx = 2, 3, 2, 2, 8, 2, 9
    kw = cases.kvcache_inputs(B, S, QH, KVH, hd, off, mx, device, _gen(), dtype=dtype)
    kw["k_cache"], kw["v_cache"] = _nan_like(kw["k_cache"]), _nan_like(kw["v_cache"])
    before = (_bits(kw["k_cache"]), _bits(kw["v_cache"]))
    name = "qkv_split_rope_kvcache_bf16" if dtype == torch.bfloat16 else \
        "qkv_split_rope_kvcache_fp16"
    q_out = torch.full((B, S, QH, hd), float("nan"), dtype=dtype, device=device)
    got = getattr(kernel, name)(**kw, q_out=q_out)
    assert got[0] is q_out and got[1] is kw["k_cache"] and got[2] is kw["v_cache"]
    for c, b in zip(got[1:], before):
        rows = torch.ones(mx, dtype=torch.bool)
        rows[off:off + S] = False
        assert torch.equal(_bits(c)[:, rows], b[:, rows])
        assert not torch.isnan(c[:, off:off + S]).any()
    want = getattr(reference_of(kernel), name)(**kw)
    _assert_close("bf16", got[0], want[0])
    _assert_close("bf16", got[1][:, off:off + S], want[1][:, off:off + S])
    assert torch.equal(_bits(got[2][:, off:off + S]), _bits(want[2][:, off:off + S]))


def test_kvcache_unaligned_caches(kernel, device):
    """Caches one element off a 16-byte boundary (views into a larger buffer) work."""
    for dtype, name in ((torch.bfloat16, "qkv_split_rope_kvcache_bf16"),
                        (torch.float16, "qkv_split_rope_kvcache_fp16")):
        kw = cases.kvcache_inputs(1, 3, 2, 1, 16, 1, 5, device, _gen(), dtype=dtype)
        store = torch.full((2, 1 + 5 * 16), -3.0, dtype=dtype, device=device)
        kw["k_cache"] = store[0, 1:].view(1, 5, 1, 16)
        kw["v_cache"] = store[1, 1:].view(1, 5, 1, 16)
        got = getattr(kernel, name)(**kw)
        want = getattr(reference_of(kernel), name)(**kw)
        _assert_close("bf16", got[1], want[1])
        assert torch.equal(_bits(got[2]), _bits(want[2]))
        assert (store[:, 0] == -3.0).all()


def test_kvcache_unaligned_inputs(kernel, device):
    """Packed input, table and q_out one element off a 16-byte boundary: the kernel's
    whole-vector loads and stores fall back to element accesses, same results."""
    for dtype, name in ((torch.bfloat16, "qkv_split_rope_kvcache_bf16"),
                        (torch.float16, "qkv_split_rope_kvcache_fp16")):
        kw = cases.kvcache_inputs(1, 3, 2, 1, 16, 1, 5, device, _gen(), dtype=dtype)
        want = getattr(reference_of(kernel), name)(**kw)
        for key in ("packed_qkv", "rope"):
            t = kw[key]
            kw[key] = torch.cat([t.new_zeros(1), t.flatten()])[1:].view(t.shape)
        q_store = torch.full((1 + 3 * 2 * 16,), -3.0, dtype=dtype, device=device)
        q_out = q_store[1:].view(1, 3, 2, 16)
        got = getattr(kernel, name)(**kw, q_out=q_out)
        assert got[0] is q_out and q_store[0] == -3.0
        _assert_close("bf16", got[0], want[0])
        _assert_close("bf16", got[1], want[1])
        assert torch.equal(_bits(got[2]), _bits(want[2]))


@pytest.mark.parametrize("pos", [0, 4, 7])
def test_devpos_writes_only_its_row(kernel, device, pos):
    kw = cases.devpos_inputs(3, 8, pos, device, _gen())
    kw["k_cache"], kw["v_cache"] = _nan_like(kw["k_cache"]), _nan_like(kw["v_cache"])
    before = (_bits(kw["k_cache"]), _bits(kw["v_cache"]))
    got = kernel.decode_k_norm_rope_kvwrite_devpos_bf16(**kw)
    assert got[0] is kw["k_cache"] and got[1] is kw["v_cache"]
    other = torch.arange(8) != pos
    for c, b in zip(got, before):
        assert torch.equal(_bits(c)[other], b[other])
    ref = reference_of(kernel)
    k_want, v_want = ref.decode_k_norm_rope_kvwrite_bf16(kw["k_pre"], kw["v_pre"],
                                                         kw["k_norm_weight"], kw["cos"], kw["sin"])
    _assert_close("bf16", got[0][pos], k_want)
    assert torch.equal(_bits(got[1][pos]), _bits(v_want))


def _guarded(cache, guard=8):
    """``cache`` copied into the middle of a buffer with ``guard`` rows (of its last two
    dimensions) of -3.0 before and after it: returns (the contiguous view, the buffer).
    A write one row before or past the cache lands in the guard (checked), not in memory
    the test cannot see."""
    row = cache.shape[-2:]
    rows = cache.numel() // (row[0] * row[1])
    store = torch.full((rows + 2 * guard, *row), -3.0, dtype=cache.dtype, device=cache.device)
    view = store[guard:guard + rows].view(cache.shape)
    view.copy_(cache)
    return view, store


def _guards_untouched(store, guard=8):
    return bool((store[:guard] == -3.0).all() and (store[-guard:] == -3.0).all())


@pytest.mark.parametrize("pos", [-1, 8, 1000, -(2**31)])
def test_devpos_out_of_range_writes_nothing(kernel, device, pos):
    """Defined behaviour: a position outside [0, max_seq_len) is masked on the device;
    rows -1 and max_seq_len (guard rows around the caches) stay untouched too."""
    kw = cases.devpos_inputs(3, 8, 0, device, _gen())
    kw["cur_pos"].fill_(pos)
    (kw["k_cache"], k_store), (kw["v_cache"], v_store) = (_guarded(kw["k_cache"]),
                                                          _guarded(kw["v_cache"]))
    before = (_bits(kw["k_cache"]), _bits(kw["v_cache"]))
    kernel.decode_k_norm_rope_kvwrite_devpos_bf16(**kw)
    assert torch.equal(_bits(kw["k_cache"]), before[0])
    assert torch.equal(_bits(kw["v_cache"]), before[1])
    assert _guards_untouched(k_store) and _guards_untouched(v_store)


@pytest.mark.parametrize("pos", [-5, -1, 0, 19, 21, 24, 500])
def test_fp16_device_position_rows_outside_cache_skipped(kernel, device, pos):
    """Row cache_offset + pos + s is written when inside [0, max_seq_len), skipped otherwise;
    Q is always written; every other cache row is untouched. Two batches, so a row just
    past one batch's cache (or just before the next one's) is a row of the other batch,
    and guard rows around both catch rows -1, -2 and max_seq_len + k."""
    B, S, off, mx = 2, 3, 3, 24
    kw = cases.kvcache_inputs(B, S, 4, 2, 16, off, mx, device, _gen(), dtype=torch.float16)
    kw["device_position"] = torch.tensor([pos], dtype=torch.int32, device=device)
    (kw["k_cache"], k_store), (kw["v_cache"], v_store) = (_guarded(_nan_like(kw["k_cache"])),
                                                          _guarded(_nan_like(kw["v_cache"])))
    before = (_bits(kw["k_cache"]), _bits(kw["v_cache"]))
    q, k_cache, v_cache = kernel.qkv_split_rope_kvcache_fp16(**kw)
    want = reference_of(kernel).qkv_split_rope_kvcache_fp16(**kw)
    _assert_close("fp16", q, want[0])
    written = [off + pos + s for s in range(S) if 0 <= off + pos + s < mx]
    untouched = torch.tensor([r not in written for r in range(mx)])
    for c, b in zip((k_cache, v_cache), before):
        assert torch.equal(_bits(c)[:, untouched], b[:, untouched])
    assert _guards_untouched(k_store) and _guards_untouched(v_store)
    for r in written:
        _assert_close("fp16", k_cache[:, r], want[1][:, r])
        assert torch.equal(_bits(v_cache[:, r]), _bits(want[2][:, r]))


def test_cat_other_rows_untouched(kernel, device):
    B, S, H, hd, off, total = 2, 5, 3, 8, 3, 13
    kw = cases.cat_inputs(B, S, H, hd, off, total, device, _gen())
    for name, fill in (("q_cat_out", -7.0), ("k_cat_out", -8.0), ("v_cat_out", -9.0)):
        kw[name].fill_(fill)
    got = kernel.qkv_split_bias_norm_rope_v_cat_bf16(**kw)
    assert got[0] is kw["q_cat_out"] and got[1] is kw["k_cat_out"] and got[2] is kw["v_cat_out"]
    for c, fill in zip(got, (-7.0, -8.0, -9.0)):
        assert (c[:, :off] == fill).all() and (c[:, off + S:] == fill).all()
    direct = reference_of(kernel).qkv_split_bias_norm_rope_v_bf16(
        **{k: v for k, v in kw.items() if not k.endswith("_cat_out") and k != "video_offset"})
    for c, w in zip(got, direct):
        _assert_close("bf16", c[:, off:off + S], w)


def test_joint3_segments(kernel, device):
    L_v, L_a, L_u, H, hd = 5, 3, 2, 2, 8
    kw = cases.joint3_inputs(L_v, L_a, L_u, H, hd, device, _gen(), B=2)  # batch > 1 supported
    for name in ("q_cat_out", "k_cat_out", "v_cat_out"):
        kw[name] = _nan_like(kw[name])
    eps = dict(eps_a=0.5, eps_u=3.0)  # large enough that a swapped eps changes the bits
    got = kernel.qkv_split_joint3_cat_bf16(**kw, rope_seq_len=4, **eps)
    want = reference_of(kernel).qkv_split_joint3_cat_bf16(**kw, rope_seq_len=4, **eps)
    for g, w in zip(got, want):
        assert not torch.isnan(g).any()
        _assert_close("bf16", g, w)
    # action / und V: raw bit copies of their packed V sections
    D = H * hd
    assert torch.equal(_bits(got[2][:, L_v:L_v + L_a].reshape(2, L_a, D)),
                       _bits(kw["packed_a"][..., 2 * D:]))


# --- bad inputs: the documented error, nothing written ---------------------------------------------

def _bad_cases():
    """(id, function, builder(device) -> kwargs, exception, message)."""
    def edit(fn_inputs, **changes):
        def build(device):
            kw = fn_inputs(device)
            for k, f in changes.items():
                kw[k] = f(kw[k]) if callable(f) else f
            return kw
        return build

    def dec_q(d):
        kw = cases.decode_inputs(4, d, _gen())
        kw["q_out"] = _nan_like(kw["q_pre"])
        return kw

    def dec_k(d):
        kw = cases.decode_inputs(4, d, _gen(), kv=True)
        kw["k_cache_dst"], kw["v_cache_dst"] = _nan_like(kw["k_pre"]), _nan_like(kw["v_pre"])
        return kw

    def devpos(d):
        return cases.devpos_inputs(2, 6, 1, d, _gen())

    def per_head(d):
        kw = cases.per_head_inputs(1, 3, 2, 1, d, _gen())
        kw["q_out"] = torch.full((1, 3, 2, 128), float("nan"), dtype=torch.bfloat16, device=d)
        return kw

    def strided(d):
        kw = cases.strided_inputs(2, 2, 1, 300, 130, d, _gen())
        kw["q_out"] = torch.full((2, 2, 128), float("nan"), dtype=torch.bfloat16, device=d)
        return kw

    def wan(d):
        kw = cases.wan_inputs(1, 6, 2, 12, d, _gen())
        kw["q_out"] = torch.full((1, 6, 2, 12), float("nan"), dtype=torch.bfloat16, device=d)
        return kw

    def cat(d):
        return cases.cat_inputs(1, 4, 2, 8, 2, 9, d, _gen())

    def joint3(d):
        return cases.joint3_inputs(4, 2, 1, 2, 8, d, _gen())

    def split(d):
        kw = cases.split_inputs(1, 3, 2, 8, d, _gen())
        kw["q_out"] = torch.full((1, 3, 2, 8), float("nan"), dtype=torch.bfloat16, device=d)
        return kw

    def bias(d):
        kw = cases.bias_rope_inputs(1, 3, 2, 1, 16, d, _gen())
        kw["q_out"] = torch.full((1, 3, 2, 16), float("nan"), dtype=torch.bfloat16, device=d)
        return kw

    def kv(d, dtype=torch.bfloat16):
        kw = cases.kvcache_inputs(1, 10, 2, 1, 16, 4, 14, d, _gen(), dtype=dtype)
        kw["q_out"] = torch.full((1, 10, 2, 16), float("nan"), dtype=dtype, device=d)
        return kw

    def kv16(d):
        return kv(d, torch.float16)

    R = RuntimeError
    return [
        ("dec_q_rank", "decode_q_norm_rope_stage_bf16",
         edit(dec_q, q_pre=lambda t: t.view(2, 2, 128), q_out=lambda t: t.view(2, 2, 128)), R,
         r"q_pre must have shape \(n_q_heads, 128\)"),
        ("dec_q_hd", "decode_q_norm_rope_stage_bf16",
         edit(dec_q, q_pre=lambda t: t[:, :64].contiguous()), R, r"q_pre must have shape"),
        ("dec_q_dtype", "decode_q_norm_rope_stage_bf16", edit(dec_q, q_pre=lambda t: t.float()),
         R, "q_pre must have dtype torch.bfloat16"),
        ("dec_q_contig", "decode_q_norm_rope_stage_bf16",
         edit(dec_q, q_pre=lambda t: t.t().contiguous().t()), R, "q_pre must be contiguous"),
        ("dec_q_cos", "decode_q_norm_rope_stage_bf16", edit(dec_q, cos=lambda t: t[:32]), R,
         "cos must have shape"),
        ("dec_q_empty", "decode_q_norm_rope_stage_bf16",
         edit(dec_q, q_pre=lambda t: t[:0], q_out=lambda t: t[:0]), R, "q_pre must have shape"),
        ("dec_q_out", "decode_q_norm_rope_stage_bf16", edit(dec_q, q_out=lambda t: t[:3]), R,
         "q_out shape must match q_pre shape"),
        ("dec_k_v", "decode_k_norm_rope_kvwrite_bf16", edit(dec_k, v_pre=lambda t: t[:3]), R,
         "v_pre shape must match k_pre shape"),
        ("dec_k_dst", "decode_k_norm_rope_kvwrite_bf16", edit(dec_k, v_cache_dst=lambda t: t[:3]),
         R, "v_cache_dst shape must match k_pre shape"),
        ("devpos_numel", "decode_k_norm_rope_kvwrite_devpos_bf16",
         edit(devpos, cur_pos=lambda t: t.repeat(2)), R, "cur_pos must contain one int32 element"),
        ("devpos_dtype", "decode_k_norm_rope_kvwrite_devpos_bf16",
         edit(devpos, cur_pos=lambda t: t.long()), R, "cur_pos must have dtype torch.int32"),
        ("devpos_cache", "decode_k_norm_rope_kvwrite_devpos_bf16",
         edit(devpos, v_cache=lambda t: t[:5]), R, "v_cache shape must match k_cache shape"),
        ("devpos_heads", "decode_k_norm_rope_kvwrite_devpos_bf16",
         edit(devpos, k_pre=lambda t: t[:1], v_pre=lambda t: t[:1]), R, "k_cache must have shape"),
        ("per_head_width", "qkv_split_per_head_norm_rope_bf16",
         edit(per_head, packed_qkv=lambda t: t[..., :-128].contiguous()), R,
         "packed_qkv last dimension must be"),
        ("per_head_weight", "qkv_split_per_head_norm_rope_bf16",
         edit(per_head, k_norm_weight=lambda t: t[:64]), R, "k_norm_weight must have shape"),
        ("per_head_cos", "qkv_split_per_head_norm_rope_bf16",
         edit(per_head, cos=lambda t: t[..., :64].contiguous()), R, "cos must have shape"),
        ("strided_width", "qk_norm_rope_strided_bf16", edit(strided, q_heads=3), R,
         r"input row widths must cover heads \* 128"),
        ("strided_rows", "qk_norm_rope_strided_bf16", edit(strided, k_in=lambda t: t[:1]), R,
         "same non-zero number of rows"),
        ("wan_width", "qkv_split_norm_rope_bf16",
         edit(wan, packed_qkv=lambda t: t[..., :-2].contiguous()), R,
         r"packed_qkv last dimension must be 3 \* heads \* head_dim"),
        ("wan_odd_hd", "qkv_split_norm_rope_bf16", edit(wan, heads=8, head_dim=3), R,
         "head_dim must be even"),
        ("wan_rope_len", "qkv_split_norm_rope_bf16", edit(wan, rope_seq_len=7), R,
         r"rope_seq_len must be in \[0, packed_qkv.shape\[1\]\]"),
        ("wan_rope_neg", "qkv_split_norm_rope_bf16", edit(wan, rope_seq_len=-1), R,
         "rope_seq_len must be in"),
        ("wan_table", "qkv_split_norm_rope_bf16",
         edit(wan, freqs_re=lambda t: t[:3].contiguous(), freqs_im=lambda t: t[:3].contiguous()),
         R, r"rope_seq_len must be <= freqs_re.size\(0\)"),
        ("wan_freqs_dtype", "qkv_split_norm_rope_bf16",
         edit(wan, freqs_re=lambda t: t.to(torch.bfloat16)), R,
         "freqs_re must have dtype torch.float32"),
        ("wan_out", "qkv_split_norm_rope_bf16", edit(wan, q_out=lambda t: t[:, :5]), R,
         "q_out must have shape"),
        ("cat_offset", "qkv_split_bias_norm_rope_v_cat_bf16", edit(cat, video_offset=6), R,
         "video_offset \\+ seq_len must be <="),
        ("cat_rank", "qkv_split_bias_norm_rope_v_cat_bf16",
         edit(cat, q_cat_out=lambda t: t[0]), R, "q_cat_out must have 4 dimensions"),
        ("cat_bias", "qkv_split_bias_norm_rope_v_cat_bf16",
         edit(cat, qkv_bias=lambda t: t[:-2].contiguous()), R, "qkv_bias must have shape"),
        ("cat_v_shape", "qkv_split_bias_norm_rope_v_cat_bf16",
         edit(cat, v_cat_out=lambda t: t[:, :-1].contiguous()), R, "v_cat_out must have shape"),
        ("joint3_batch", "qkv_split_joint3_cat_bf16",
         edit(joint3, packed_a=lambda t: t.repeat(2, 1, 1)), R, "must have the same batch size"),
        ("joint3_rope", "qkv_split_joint3_cat_bf16", edit(joint3, rope_seq_len=5), R,
         r"rope_seq_len must be in \[0, packed_v.shape\[1\]\]"),
        ("joint3_empty", "qkv_split_joint3_cat_bf16",
         edit(joint3, packed_u=lambda t: t[:, :0]), R, "packed_u must be non-empty"),
        ("joint3_cat", "qkv_split_joint3_cat_bf16",
         edit(joint3, k_cat_out=lambda t: t[:, :-1].contiguous()), R, "k_cat_out must have shape"),
        ("split_out", "qkv_split_bf16", edit(split, q_out=lambda t: t[..., :4].contiguous()), R,
         "q_out must have shape"),
        ("split_k_out", "qkv_split_bf16",
         edit(split, k_out=torch.empty(1, 3, 2, 4, dtype=torch.bfloat16)), R,
         "k_out must have the same shape as q_out"),
        ("split_width", "qkv_split_bf16", edit(split, head_dim=7), R,
         "packed_qkv last dimension must be"),
        ("bias_odd_hd", "qkv_split_bias_rope_bf16", edit(bias, head_dim=15), R,
         "head_dim must be even"),
        ("bias_width", "qkv_split_bias_rope_bf16", edit(bias, kv_heads=2), R,
         "invalid QKV width"),
        ("bias_table", "qkv_split_bias_rope_bf16",
         edit(bias, cos=lambda t: t[..., :7].contiguous(), sin=lambda t: t[..., :7].contiguous()),
         R, "cos must have shape"),
        ("bias_table_dtype", "qkv_split_bias_rope_bf16", edit(bias, sin=lambda t: t.half()), R,
         "sin must have dtype torch.float32"),
        ("kv_bounds", "qkv_split_rope_kvcache_bf16", edit(kv, cache_offset=5), R,
         r"cache_offset \+ seq_len must be within k_cache.shape\[1\]"),
        ("kv_width", "qkv_split_rope_kvcache_bf16",
         edit(kv, packed_qkv=lambda t: t[..., :-2].contiguous()), R, "invalid QKV width"),
        ("kv_rope_rows", "qkv_split_rope_kvcache_bf16", edit(kv, rope=lambda t: t[:9]), R,
         "rope must have shape"),
        ("kv_v_cache", "qkv_split_rope_kvcache_bf16",
         edit(kv, v_cache=lambda t: t[:, :-1].contiguous()), R,
         "v_cache shape must match k_cache shape"),
        ("kv16_dtype", "qkv_split_rope_kvcache_fp16", kv, R,
         "packed_qkv must have dtype torch.float16"),
        ("kv16_bounds", "qkv_split_rope_kvcache_fp16", edit(kv16, cache_offset=5), R,
         r"cache_offset \+ seq_len must be within"),
        ("kv16_pos", "qkv_split_rope_kvcache_fp16",
         edit(kv16, device_position=torch.zeros(2, dtype=torch.int32)), R,
         "device_position must contain one int32 element"),
        ("kv16_pos_dtype", "qkv_split_rope_kvcache_fp16",
         edit(kv16, device_position=torch.zeros(1, dtype=torch.int64)), R,
         "device_position must contain one int32 element"),
        ("kv16_max_seq_len", "qkv_split_rope_kvcache_fp16",
         edit(kv16, device_position=torch.zeros(1, dtype=torch.int32), v_cache=None), ValueError,
         "max_seq_len is required when device_position is used"),
    ]


BAD = _bad_cases()


@pytest.mark.parametrize("bad", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_raise_and_write_nothing(kernel, device, bad):
    _, name, build, exc, message = bad
    kw = build(device)
    kw = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in kw.items()}
    written = {k: _bits(v) for k, v in kw.items()
               if torch.is_tensor(v) and (k.endswith("_out") or "cache" in k)}
    with pytest.raises(exc, match=message):
        getattr(kernel, name)(**kw)
    for k, b in written.items():
        assert torch.equal(_bits(kw[k]), b), f"{k} was written"


@pytest.mark.gpu
def test_cpu_tensor_rejected_on_gpu(kernel):
    kw = cases.decode_inputs(2, torch.device("cuda"), _gen())
    kw["q_pre"] = kw["q_pre"].cpu()
    with pytest.raises(RuntimeError, match="q_pre must be a CUDA tensor"):
        kernel.decode_q_norm_rope_stage_bf16(**kw)


# --- torch.library contracts, torch.compile, CUDA graphs ----------------------------------------------


def _op_calls(device):
    """(op name, args in schema order) for every op."""
    g = _gen()
    bf, h = torch.bfloat16, torch.float16
    e = lambda *s, dt=bf: torch.empty(*s, dtype=dt, device=device)  # noqa: E731
    q = cases.decode_inputs(3, device, g)
    k = cases.decode_inputs(3, device, g, kv=True)
    dp = cases.devpos_inputs(2, 5, 3, device, g)
    ph = cases.per_head_inputs(1, 3, 2, 1, device, g)
    st = cases.strided_inputs(2, 2, 1, 300, 130, device, g)
    w = cases.wan_inputs(1, 5, 2, 8, device, g, bias=True)
    ct = cases.cat_inputs(1, 4, 2, 8, 2, 9, device, g)
    j3 = cases.joint3_inputs(4, 2, 1, 2, 8, device, g)
    sp = cases.split_inputs(1, 3, 2, 6, device, g)
    br = cases.bias_rope_inputs(1, 3, 2, 1, 16, device, g)
    kv = cases.kvcache_inputs(1, 3, 2, 1, 16, 1, 6, device, g)
    k16 = cases.kvcache_inputs(1, 2, 2, 1, 16, 1, 6, device, g, dtype=h)
    pos = torch.tensor([2], dtype=torch.int32, device=device)
    wan_in = (w["packed_qkv"], w["norm_q_weight"], w["norm_k_weight"], w["freqs_re"],
              w["freqs_im"])
    return [
        ("decode_q_norm_rope_stage_bf16", (*q.values(), 1e-6, e(3, 128))),
        ("decode_k_norm_rope_kvwrite_bf16", (*k.values(), 1e-6, e(3, 128), e(3, 128))),
        ("decode_k_norm_rope_kvwrite_devpos_bf16",
         (dp["k_pre"], dp["v_pre"], dp["k_norm_weight"], dp["cos"], dp["sin"], dp["cur_pos"],
          1e-6, dp["k_cache"], dp["v_cache"])),
        ("qkv_split_per_head_norm_rope_bf16",
         (ph["packed_qkv"], ph["q_norm_weight"], ph["k_norm_weight"], ph["cos"], ph["sin"], 2, 1,
          1e-6, e(1, 3, 2, 128), e(1, 3, 1, 128), e(1, 3, 1, 128))),
        ("qk_norm_rope_strided_bf16",
         (st["q_in"], st["k_in"], st["q_weight"], st["k_weight"], st["cos"], st["sin"], 2, 1,
          1e-6, e(2, 2, 128), e(2, 1, 128))),
        ("qkv_split_norm_rope_bf16", (*wan_in, 2, 8, 4, 1e-6, e(1, 5, 2, 8), e(1, 5, 2, 8))),
        ("qkv_split_bias_norm_rope_v_bf16",
         (w["packed_qkv"], w["qkv_bias"], *wan_in[1:], 2, 8, 5, 1e-6, e(1, 5, 2, 8),
          e(1, 5, 2, 8), e(1, 5, 2, 8))),
        ("qkv_split_bias_norm_rope_v_cat_bf16",
         (ct["packed_qkv"], ct["qkv_bias"], ct["norm_q_weight"], ct["norm_k_weight"],
          ct["freqs_re"], ct["freqs_im"], 2, 8, 2, 4, 1e-6, ct["q_cat_out"], ct["k_cat_out"],
          ct["v_cat_out"])),
        ("qkv_split_joint3_cat_bf16",
         (*[j3[n] for n in ("packed_v", "qkv_v_bias", "norm_v_q_weight", "norm_v_k_weight",
                            "freqs_re", "freqs_im", "packed_a", "norm_a_q_weight",
                            "norm_a_k_weight", "packed_u", "norm_u_q_weight",
                            "norm_u_k_weight")],
          2, 8, 4, 1e-6, 1e-6, 1e-6, j3["q_cat_out"], j3["k_cat_out"], j3["v_cat_out"])),
        ("qkv_split_bf16", (sp["packed_qkv"], 2, 6, e(1, 3, 2, 6), e(1, 3, 2, 6), e(1, 3, 2, 6))),
        ("qkv_split_bias_rope_bf16",
         (br["packed_qkv"], br["qkv_bias"], br["cos"], br["sin"], 2, 1, 16, e(1, 3, 2, 16),
          e(1, 3, 1, 16), e(1, 3, 1, 16))),
        ("qkv_split_bias_rope_fp16",
         (br["packed_qkv"], br["qkv_bias"], br["cos"], br["sin"], 2, 1, 16,
          e(1, 3, 2, 16, dt=h), e(1, 3, 1, 16, dt=h), e(1, 3, 1, 16, dt=h))),
        ("qkv_split_rope_kvcache_bf16",
         (kv["packed_qkv"], kv["rope"], 2, 1, 16, 1, e(1, 3, 2, 16), kv["k_cache"],
          kv["v_cache"])),
        ("qkv_split_rope_kvcache_fp16",
         (k16["packed_qkv"], k16["rope"], 2, 1, 16, 1, pos, e(1, 2, 2, 16, dt=h),
          k16["k_cache"], k16["v_cache"])),
    ]


@pytest.mark.parametrize("index", range(14))
def test_opcheck(kernel, device, index):
    name, args = _op_calls(device)[index]
    torch.library.opcheck(getattr(_ops(kernel), name), args)


def test_direct_launch_equals_op(kernel, device):
    """Eager wrappers launch directly; the registered ops give the same bits."""
    ops = _ops(kernel)
    w = cases.wan_inputs(2, 5, 3, 8, device, _gen(), bias=True)
    q1, k1, v1 = kernel.qkv_split_bias_norm_rope_v_bf16(**w)
    outs = [torch.empty_like(q1) for _ in range(3)]
    ops.qkv_split_bias_norm_rope_v_bf16(w["packed_qkv"], w["qkv_bias"], w["norm_q_weight"],
                                        w["norm_k_weight"], w["freqs_re"], w["freqs_im"], 3, 8,
                                        5, 1e-6, *outs)
    for a, b in zip((q1, k1, v1), outs):
        assert torch.equal(_bits(a), _bits(b))
    kv = cases.kvcache_inputs(1, 3, 2, 1, 16, 1, 6, device, _gen(), dtype=torch.float16)
    pos = torch.tensor([1], dtype=torch.int32, device=device)
    kv2 = _fresh(kv)
    a = kernel.qkv_split_rope_kvcache_fp16(**kv, device_position=pos)
    q2 = torch.empty_like(a[0])
    ops.qkv_split_rope_kvcache_fp16(kv2["packed_qkv"], kv2["rope"], 2, 1, 16, 1, pos, q2,
                                    kv2["k_cache"], kv2["v_cache"])
    for x, y in zip(a, (q2, kv2["k_cache"], kv2["v_cache"])):
        assert torch.equal(_bits(x), _bits(y))


def test_compile_fullgraph_no_recompile_across_token_counts(kernel, device):
    """One dynamic graph serves every token count; compiled == eager bit for bit."""
    backend = "inductor" if device.type == "cuda" else "aot_eager"

    def fn(w, ph, br, kv, sp, d):
        a = kernel.qkv_split_bias_norm_rope_v_bf16(**w)
        b = kernel.qkv_split_per_head_norm_rope_bf16(**ph)
        c = kernel.qkv_split_bias_rope_bf16(**br)
        e = kernel.qkv_split_rope_kvcache_bf16(**kv)
        f = kernel.qkv_split_bf16(**sp)
        g = kernel.decode_q_norm_rope_stage_bf16(**d)
        return (*a, *b, *c, *e, *f, g)

    def inputs(T):
        g = _gen(T)
        return (cases.wan_inputs(1, T, 2, 8, device, g, bias=True),
                cases.per_head_inputs(1, T, 2, 1, device, g),
                cases.bias_rope_inputs(1, T, 2, 1, 16, device, g),
                cases.kvcache_inputs(1, T, 2, 1, 16, 0, 40, device, g),
                cases.split_inputs(1, T, 2, 8, device, g),
                cases.decode_inputs(3, device, g))

    def clone(args):
        return tuple(_fresh(a) for a in args)

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend=backend)
    compiled(*inputs(7))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for T in (5, 19, 33):
            args = inputs(T)
            for got, want in zip(compiled(*clone(args)), fn(*clone(args))):
                assert torch.equal(_bits(got), _bits(want))


@pytest.mark.gpu
def test_cuda_graph_devpos_position_changes_between_replays(kernel):
    """The device position is read at replay time: change it between replays."""
    device = torch.device("cuda")
    kw = cases.devpos_inputs(8, 64, 0, device, _gen())
    k16 = cases.kvcache_inputs(1, 1, 16, 8, 80, 0, 1024, device, _gen(), dtype=torch.float16)
    k16["device_position"] = torch.zeros(1, dtype=torch.int32, device=device)
    q16 = torch.empty(1, 1, 16, 80, dtype=torch.float16, device=device)

    def step():
        kernel.decode_k_norm_rope_kvwrite_devpos_bf16(**kw)
        kernel.qkv_split_rope_kvcache_fp16(**k16, q_out=q16)

    step()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    ref = reference_of(kernel)
    for pos in (5, 17, 63, 64, -1, 1000):
        kw["cur_pos"].fill_(pos)
        k16["device_position"].fill_(pos)
        fresh = cases.devpos_inputs(8, 64, 0, device, _gen(pos + 10_000))
        for name in ("k_pre", "v_pre"):
            kw[name].copy_(fresh[name])
        want_dev = ref.decode_k_norm_rope_kvwrite_devpos_bf16(**kw)
        want16 = ref.qkv_split_rope_kvcache_fp16(**k16)
        graph.replay()
        torch.cuda.synchronize()
        _assert_close("bf16", kw["k_cache"], want_dev[0])
        assert torch.equal(_bits(kw["v_cache"]), _bits(want_dev[1]))
        _assert_close("fp16", q16, want16[0])
        _assert_close("fp16", k16["k_cache"], want16[1])
        assert torch.equal(_bits(k16["v_cache"]), _bits(want16[2]))


@pytest.mark.gpu
def test_cuda_graph_replay_model_shapes(kernel):
    device = torch.device("cuda")
    kv = cases.kvcache_inputs(1, 10, 8, 1, 256, 560, 1024, device, _gen(),)
    ph = cases.per_head_inputs(1, 277, 16, 8, device, _gen())
    ph_out = [torch.empty(1, 277, h, 128, dtype=torch.bfloat16, device=device) for h in (16, 8, 8)]
    q_out = torch.empty(1, 10, 8, 256, dtype=torch.bfloat16, device=device)

    def step():
        kernel.qkv_split_rope_kvcache_bf16(**kv, q_out=q_out)
        kernel.qkv_split_per_head_norm_rope_bf16(**ph, q_out=ph_out[0], k_out=ph_out[1],
                                                 v_out=ph_out[2])

    step()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    kv["packed_qkv"].copy_(torch.randn_like(kv["packed_qkv"].float()).to(torch.bfloat16))
    ph["packed_qkv"].normal_()
    ref = reference_of(kernel)
    want_kv = ref.qkv_split_rope_kvcache_bf16(**kv)
    graph.replay()
    torch.cuda.synchronize()
    _assert_close("bf16", q_out, want_kv[0])
    _assert_close("bf16", kv["k_cache"], want_kv[1])
    for g, w in zip(ph_out, ref.qkv_split_per_head_norm_rope_bf16(**ph)):
        _assert_close("bf16", g, w)
