"""Tests of flashrt-gemm-epilogues, loaded through `kernels` from a fresh build.

CPU: Triton interpreter, small ragged shapes; GPU: the same plus the spec's
grids (cases.py), Inductor compile and CUDA-graph replay. Outputs poisoned first.
"""

import functools
import importlib

import pytest
import torch

from flashrt_tools.repo import ROOT, load_file
from flashrt_tools.tolerance import compare
from flashrt_tools.validation import reference_of, run_case

cases = load_file(ROOT / "flashrt-gemm-epilogues" / "tests" / "cases.py",
                  "_flashrt_cases_flashrt_gemm_epilogues")

SEED = 1234
FP8, BF16 = torch.float8_e4m3fn, torch.bfloat16


def _gen(seed=SEED):
    return torch.Generator().manual_seed(seed)


def _poison(shape, dtype, device):
    if dtype == FP8:
        return torch.full(shape, 0x7F, dtype=torch.uint8, device=device).view(FP8)
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def _bits(t):
    return t.view({1: torch.uint8, 2: torch.int16}[t.element_size()]).clone()


def _same_bits(a, b):
    return a.shape == b.shape and torch.equal(_bits(a.contiguous()), _bits(b.contiguous()))


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_matches_reference(kernel, device, case):
    verdicts, _ = run_case(kernel, reference_of(kernel), case, device, seed=SEED)
    for v in verdicts:
        assert v.ok, f"{case.id}: {v.message}"


@pytest.mark.parametrize("fn", cases.QUANT_FUNCS)
@pytest.mark.parametrize("shape", [(4, 16), (2, 3, 32), (8, 64)], ids=str)
@pytest.mark.parametrize("scale", [0.25, 0.5, 1.0])
def test_quantizers_exact_with_pow2_scales(kernel, device, fn, shape, scale):
    """Spec §3.4: exact FP8 parity with the PyTorch reference at power-of-two scales;
    the caller's out buffer is written and returned."""
    kw = cases.quant_inputs(fn, shape, device, _gen(), scale=scale)
    out = _poison(shape, FP8, device)
    assert getattr(kernel, fn)(**kw, out=out) is out
    assert _same_bits(out, getattr(reference_of(kernel), fn)(**kw))


@pytest.mark.parametrize("fn", cases.GEMM_FUNCS)
def test_gemm_out_buffer_returned(kernel, device, fn):
    kw = cases.gemm_inputs(fn, 9, 40, 24, device, _gen())
    out = _poison((9, 24), BF16, device)
    assert getattr(kernel, fn)(**kw, out=out) is out
    assert not torch.isnan(out.float()).any()


def test_identity_weight_is_exact(kernel, device):
    """b = identity: the product is exact, so out == bf16(x + bias) / bf16(G(x + bias))."""
    M, K = 19, 48
    x = (torch.randn(M, K, generator=_gen()) * 2).to(BF16).to(device)
    eye = torch.eye(K, dtype=BF16, device=device)
    bias = (torch.randn(K, generator=_gen(3)) * 0.5).to(BF16).to(device)
    assert _same_bits(kernel.bf16_linear_bf16(x, eye), x)
    assert _same_bits(kernel.bf16_gemm_bias(x, eye, bias), (x.float() + bias.float()).to(BF16))
    # GELU: the kernel's tanh differs from PyTorch's in the last fp32 bits: within 1 bf16 ulp
    got = kernel.bf16_gemm_bias_gelu(x, eye, bias).float()
    want = reference_of(kernel).bf16_gemm_bias_gelu(x, eye, bias).float()
    assert ((got - want).abs() <= want.abs() * 2.0 ** -7 + 1e-6).all()


def test_channel_scale_is_x_times_c_then_reciprocal(kernel, device):
    """(x * c) * fp32(1/s), not x * (c / s): a non-power-of-two scale exposes the order."""
    kw = cases.quant_inputs("channel_scale_quantize_fp8_static_bf16", (16, 256), device, _gen())
    kw["scale"] = torch.tensor([0.0137], device=device)
    got = kernel.channel_scale_quantize_fp8_static_bf16(**kw)
    want = reference_of(kernel).channel_scale_quantize_fp8_static_bf16(**kw)
    assert _same_bits(got, want)


def test_channel_scale_rounds_like_reciprocal_on_fp8_ties(kernel, device):
    """Catches x / s (division) and x * (c * r) (wrong order): inputs put x*c/s exactly on E4M3
    rounding ties, where only (x * c) * fp32(1/s) lands on the spec's side (s = 7)."""
    g = _gen()
    mids = torch.tensor([(1 + (2 * j + 1) / 16) * 2.0 ** e for j in range(8) for e in range(-4, 6)])
    R, N = 6, 40
    m = mids[torch.randint(0, len(mids), (R, N), generator=g)]
    m = m * (torch.randint(0, 2, (R, N), generator=g) * 2 - 1)
    c = torch.tensor([1.0, 7.0]).repeat(N // 2)  # c = 1 columns hold x = 7 m, c = 7 ones x = m
    x = torch.where(c == 1.0, m * 7, m)
    assert torch.equal(x.to(BF16).float(), x)  # every input exact in bf16
    kw = {"input": x.to(BF16).to(device), "channel_scale": c.to(BF16).to(device),
          "scale": torch.tensor([7.0], device=device)}
    want = reference_of(kernel).channel_scale_quantize_fp8_static_bf16(**kw)
    xf, cf = x.to(device), c.to(device)
    division = (xf * cf / 7.0).to(FP8)
    reordered = (xf * (cf * (1.0 / kw["scale"]))).to(FP8)
    assert not _same_bits(want, division) and not _same_bits(want, reordered)  # ties bite
    out = _poison((R, N), FP8, device)
    assert kernel.channel_scale_quantize_fp8_static_bf16(**kw, out=out) is out
    assert _same_bits(out, want)


@pytest.mark.parametrize("fn", cases.QUANT_FUNCS)
def test_quantizers_nan_and_saturation(kernel, device, fn):
    """Catches a missing or reordered clamp: NaN -> -448 (code 0xFE), out-of-range -> +-448."""
    kw = cases.quant_inputs(fn, (5, 48), device, _gen(), scale=0.25)
    x = kw["input"].clone()
    x[0, ::3] = float("nan")
    x[1, ::2], x[1, 1::2] = 300.0, -300.0  # 1200 after 1/s: saturates (channel scale: sign of c)
    x[2, ::4] = 116.0  # 464 = the tie between 448 and 480 after 1/s
    x[3, ::5] = -1e4
    kw["input"] = x
    out = _poison((5, 48), FP8, device)
    getattr(kernel, fn)(**kw, out=out)
    assert _same_bits(out, getattr(reference_of(kernel), fn)(**kw))
    assert (_bits(out[0, ::3]) == 0xFE).all()  # NaN rows of every op end at -448


@pytest.mark.parametrize("fn", cases.QUANT_FUNCS)
@pytest.mark.parametrize("shape", [(3, 1100), (2, 2, 2085)], ids=str)
def test_quantizers_rows_wider_than_one_column_block(kernel, device, fn, shape):
    """Catches a lost column-block offset (grid axis 1) in the data or the per-column vector:
    rows over 1024 columns take several programs per row, the last one ragged. fp8 rule:
    GELU's tanh may put one deep-tail value (|G| near half the least subnormal) a code away."""
    kw = cases.quant_inputs(fn, shape, device, _gen(), scale=0.25)
    out = _poison(shape, FP8, device)
    assert getattr(kernel, fn)(**kw, out=out) is out
    v = compare("fp8", out, getattr(reference_of(kernel), fn)(**kw))
    assert v.ok, v.message


def test_ops_equal_direct_launch(kernel, device):
    """Catches an op (the torch.compile path) registered with the wrong epilogue or mode:
    every op gives the wrapper's bits."""
    ops = _ops(kernel)
    for fn in cases.GEMM_FUNCS:
        kw = cases.gemm_inputs(fn, 5, 40, 24, device, _gen())
        out = _poison((5, 24), BF16, device)
        getattr(ops, fn)(*kw.values(), out)
        assert _same_bits(out, getattr(kernel, fn)(**kw)), fn
    for fn in cases.QUANT_FUNCS:
        kw = cases.quant_inputs(fn, (3, 40), device, _gen())
        out = _poison((3, 40), FP8, device)
        getattr(ops, fn)(*kw.values(), out)
        assert _same_bits(out, getattr(kernel, fn)(**kw)), fn


# --- BF16 GEMM launch paths --------------------------------------------------------------------


def _gemm_module(kernel):
    return importlib.import_module(kernel.__name__ + ".bf16_gemm")


def _gemm_ok(got, want):
    v = compare("gemm", got, want, **cases.GEMM_TOL["gemm"])
    assert v.ok, v.message


EPI_FUNCS = ("bf16_linear_bf16", "bf16_gemm_bias", "bf16_gemm_bias_gelu")  # EPI 0, 1, 2


# (M, K, N, BLOCK_K, SPLIT): a K tail in the last split; two column tiles, the second
# partial; 9 K steps in 4 splits of 3, the last split empty (a zero partial).
SPLIT_CASES = [(5, 1000, 40, 128, 4), (16, 640, 96, 128, 2), (3, 1152, 48, 128, 4),
               (40, 1000, 72, 128, 2)]  # the last: 64-wide row side, 40 rows


@pytest.mark.parametrize("M,K,N,bk,split", SPLIT_CASES, ids=str)
def test_split_k_edges_are_exact_and_deterministic(kernel, device, M, K, N, bk, split):
    """The split-K swap kernel at explicit configurations, every epilogue: matches the
    exact product and is bit-identical over repeated calls (partials summed in split
    order whichever program arrives last)."""
    gemm = _gemm_module(kernel)
    steps = -(-K // bk)
    cfg = ("swap", 16 if M <= 16 else 64, 64, bk, split, -(-steps // split) * bk, 4, 4)
    for epi, fn in enumerate(EPI_FUNCS):
        kw = cases.gemm_inputs(fn, M, K, N, device, _gen())
        a, b = list(kw.values())[:2]
        outs = [_poison((M, N), BF16, device) for _ in range(3)]
        for out in outs:
            gemm.launch_bf16_gemm(a, b, kw.get("bias"), out, epi, cfg)
        assert all(_same_bits(out, outs[0]) for out in outs[1:]), fn
        _gemm_ok(outs[0], getattr(reference_of(kernel), fn)(**kw))


def test_split_k_rule_and_counters(kernel, device):
    """The launch rule splits K = 2100 over one column tile (4 splits under the
    interpreter's 4 SMs as on a GPU); the arrival counters are zero after the calls."""
    M, K, N = 5, 2100, 40
    gemm = _gemm_module(kernel)
    cfg = gemm.gemm_config(M, N, K, device)
    assert cfg[0] == "swap" and cfg[4] > 1, cfg
    kw = cases.gemm_inputs("bf16_gemm_bias_gelu", M, K, N, device, _gen())
    first = kernel.bf16_gemm_bias_gelu(**kw)
    assert _same_bits(kernel.bf16_gemm_bias_gelu(**kw), first)
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert int(gemm._COUNTERS.get(first.device, 1).abs().sum()) == 0  # the calls' buffer


def test_graph_counters_come_from_a_pool_zeroed_before_capture(kernel, device, monkeypatch):
    """Eager calls share one buffer per (device, stream); calls captured into a graph get
    counters of their own, 128-byte aligned slices of a pool zeroed before capture, used
    by the kernel and left at zero; a capture that finds the pool short gets fresh zeros."""
    gemm = _gemm_module(kernel)
    host = importlib.import_module(kernel.__name__ + "._host")  # common/_host.SplitCounters
    counters = host.SplitCounters()
    counters.POOL = 96
    eager = counters.get(device, 16)
    assert counters.get(device, 16) is eager and not eager.any()
    monkeypatch.setattr(host, "capturing", lambda device: True)
    first, second = counters.get(device, 16), counters.get(device, 40)
    pool = counters._kept[0]
    assert (first.numel(), second.numel()) == (32, 64)
    assert first.data_ptr() == pool.data_ptr() and second.data_ptr() == pool.data_ptr() + 128
    fallback = counters.get(device, 16)  # 96 counters handed out: the pool is short
    assert fallback.data_ptr() not in (pool.data_ptr(), eager.data_ptr()) and not fallback.any()

    monkeypatch.setattr(gemm, "_COUNTERS", counters)
    M, K, N, bk, split = 16, 640, 96, 128, 2
    kw = cases.gemm_inputs("bf16_gemm_bias", M, K, N, device, _gen())
    key = kw["a"].device  # the pools are keyed by the indexed device ("cuda:0")
    counters._pools[key] = (pool, 0)
    out = _poison((M, N), BF16, device)
    gemm.launch_bf16_gemm(kw["a"], kw["b"], kw["bias"], out, 1,
                          ("swap", 16, 64, bk, split, 384, 4, 4))
    assert counters._pools[key][1] == 32 and not pool.any()
    _gemm_ok(out, reference_of(kernel).bf16_gemm_bias(**kw))


@pytest.mark.parametrize("M", [1, 15, 16, 17, 18, 32, 33, 64, 65], ids=lambda m: f"M={m}")
def test_gemm_rows_around_the_swap_boundaries(kernel, device, M):
    """Two column tiles: M <= 16 takes the swap kernel's 16-wide row side, up to 64 rows
    its 32 / 64-wide one, M > 64 the tile kernel; all match the exact product (ragged
    K = 520 and N = 72: K tail, partial column tile, rows short of the block)."""
    K, N = 520, 72
    cfg = _gemm_module(kernel).gemm_config(M, N, K, device)
    want = ("swap", 16) if M <= 16 else ("swap", 32) if M <= 32 else \
        ("swap", 64) if M <= 64 else ("tile",)
    assert cfg[:len(want)] == want, cfg
    for fn in ("bf16_linear_bf16", "bf16_gemm_bias_gelu"):
        kw = cases.gemm_inputs(fn, M, K, N, device, _gen(M))
        out = _poison((M, N), BF16, device)
        assert getattr(kernel, fn)(**kw, out=out) is out
        _gemm_ok(out, getattr(reference_of(kernel), fn)(**kw))


@pytest.mark.parametrize("M,K,N,want", [
    (10, 1024, 4096, ("swap", 16, 32, 256, 1)),    # 128 tiles of 32 columns: one wave
    (16, 1024, 2560, ("swap", 16, 32, 256, 1)),    # 80 tiles of 32 (160 of 16: two waves)
    (1, 1024, 1024, ("swap", 16, 16, 256, 1)),     # 64 tiles of 16
    (10, 4096, 1024, ("swap", 16, 64, 256, 4)),    # 16 tiles x 4 splits of 1024
    (10, 2048, 1024, ("swap", 16, 64, 128, 4)),    # 4 splits of 512: 128-wide K steps
    (10, 4304, 1152, ("swap", 16, 64, 256, 4)),    # 18 tiles x 4 splits, a K tail
    (16, 16384, 2048, ("swap", 16, 64, 256, 4)),   # 32 tiles x 4 (8 would pass 132 SMs)
    (16, 2048, 16384, ("swap", 16, 64, 128, 1)),   # 256 tiles: two waves, 128-wide steps
    (16, 1152, 4304, ("swap", 16, 64, 256, 1)),    # 135 tiles of 32 would not fit one wave
    (17, 1024, 4096, ("swap", 32, 64, 256, 1)),    # 17-32 rows: 64 tiles, 256-wide K
    (41, 1536, 6144, ("swap", 64, 64, 128, 1)),    # 96 tiles: a split would pass a wave
    (64, 4096, 4096, ("swap", 64, 64, 128, 2)),    # 64 tiles x 2 splits of 2048
    (64, 4096, 1024, ("swap", 64, 64, 128, 4)),    # 16 tiles x 4 splits of 1024
    (64, 16384, 2048, ("swap", 64, 64, 128, 4)),   # 32 tiles x 4 (8 would pass a wave)
    (64, 2048, 16384, ("tile", 32)),               # 256 tiles: the tile kernel
    (512, 1152, 4304, ("tile", 128)),
], ids=str)
def test_gemm_config_at_132_sms(kernel, monkeypatch, M, K, N, want):
    """The launch rule at an H100 / H200's 132 SMs picks the configurations the sweep
    (benchmarks/tune_epilogues.py) measured best; a pure function of (M, N, K, device)."""
    gemm = _gemm_module(kernel)
    monkeypatch.setattr(gemm, "_sm_count", lambda device: 132)
    cfg = gemm.gemm_config.__wrapped__(M, N, K, torch.device("cuda"))
    assert cfg[:len(want)] == want, cfg


@pytest.mark.parametrize("n_rows,N,want", [
    (1, 4096, (1, 1024, 4)), (64, 16384, (1, 1024, 4)),  # 8 elements per thread, 1 row
    (8192, 4096, (4, 1024, 4)),                           # large: 4 rows per program
    (1, 37, (16, 64, 1)), (33, 1000, (1, 1024, 4)),      # narrow rows share a program
], ids=str)
def test_quantize_config(kernel, n_rows, N, want):
    epi = importlib.import_module(kernel.__name__ + ".epilogues")
    assert epi.quantize_config(n_rows, N)[:3] == want


# --- bad inputs ------------------------------------------------------------------------------


GEMM_BAD = [
    ("bf16_gemm_bias", "k_mismatch", "a.shape\\[1\\] must match b.shape\\[0\\]"),
    ("bf16_gemm_bias", "bias_length", "bias length must match b.shape\\[1\\]"),
    ("bf16_gemm_bias_gelu", "out_shape", "out must have shape"),
    ("bf16_gemm_bias_gelu", "dtype", "a must have dtype torch.bfloat16"),
    ("bf16_linear_bias_bf16", "k_mismatch", "x.shape\\[1\\] must match w.shape\\[0\\]"),
    ("bf16_linear_bias_bf16", "bias_length", "bias length must match w.shape\\[1\\]"),
    ("bf16_linear_bf16", "non_contiguous", "x must be contiguous"),
    ("bf16_linear_bf16", "rank", "x must be 2-D"),
]


@pytest.mark.parametrize("fn,kind,message", GEMM_BAD, ids=lambda v: str(v))
def test_gemm_bad_inputs(kernel, device, fn, kind, message):
    kw = cases.gemm_inputs(fn, 8, 32, 16, device, _gen())
    first, second = list(kw)[:2]
    out = _poison((8, 16), BF16, device)
    if kind == "k_mismatch":
        kw[second] = kw[second][:-1].contiguous()
    elif kind == "bias_length":
        kw["bias"] = kw["bias"][:-1].contiguous()
    elif kind == "out_shape":
        out = _poison((8, 15), BF16, device)
    elif kind == "dtype":
        kw[first] = kw[first].float()
    elif kind == "non_contiguous":
        kw[first] = torch.randn(32, 8, generator=_gen()).to(BF16).to(device).t()
    elif kind == "rank":
        kw[first] = kw[first][0]
    before = _bits(out)
    with pytest.raises(RuntimeError, match=message):
        getattr(kernel, fn)(**kw, out=out)
    assert torch.equal(_bits(out), before)


QUANT_BAD = [
    ("bias_gelu_quantize_fp8_static_bf16", "vec_length",
     "bias length must match the last input dimension"),
    ("channel_scale_quantize_fp8_static_bf16", "vec_length",
     "channel_scale length must match the last input dimension"),
    ("gelu_quantize_fp8_static_bf16", "out_shape", "out must have the same shape as input"),
    ("gelu_quantize_fp8_static_bf16", "out_dtype", "out must have dtype torch.float8_e4m3fn"),
    ("gelu_quantize_fp8_static_bf16", "scale", "scale must contain exactly one value"),
    ("bias_gelu_quantize_fp8_static_bf16", "dtype", "input must have dtype torch.bfloat16"),
    ("channel_scale_quantize_fp8_static_bf16", "non_contiguous", "input must be contiguous"),
    ("gelu_quantize_fp8_static_bf16", "empty", "non-empty"),
]


@pytest.mark.parametrize("fn,kind,message", QUANT_BAD, ids=lambda v: str(v))
def test_quantize_bad_inputs(kernel, device, fn, kind, message):
    kw = cases.quant_inputs(fn, (4, 32), device, _gen(), scale=0.5)
    out = _poison((4, 32), FP8, device)
    vec = "bias" if "bias" in kw else "channel_scale"
    if kind == "vec_length":
        kw[vec] = kw[vec][:-1].contiguous()
    elif kind == "out_shape":
        out = _poison((4, 31), FP8, device)
    elif kind == "out_dtype":
        out = _poison((4, 32), BF16, device)
    elif kind == "scale":
        kw["scale"] = torch.ones(2, device=device)
    elif kind == "dtype":
        kw["input"] = kw["input"].float()
    elif kind == "non_contiguous":
        kw["input"] = torch.randn(32, 4, generator=_gen()).to(BF16).to(device).t()
    elif kind == "empty":
        kw["input"], out = kw["input"][:0], out[:0]
    before = _bits(out)
    with pytest.raises(RuntimeError, match=message):
        getattr(kernel, fn)(**kw, out=out)
    assert torch.equal(_bits(out), before)


# --- torch.library contracts, compile, CUDA graphs ---------------------------------------------


def _ops(kernel):
    return importlib.import_module(f"{kernel.__name__}._ops").ops


def test_opcheck(kernel, device):
    ops = _ops(kernel)
    for fn in cases.GEMM_FUNCS:
        kw = cases.gemm_inputs(fn, 5, 32, 24, device, _gen())
        torch.library.opcheck(getattr(ops, fn), (*kw.values(), torch.empty(5, 24, dtype=BF16,
                                                                            device=device)))
    # quantizers write FP8: opcheck's test_schema compares with torch.allclose, which torch
    # does not implement for float8; the other checks run, and the schema is checked below.
    opcheck = functools.partial(torch.library.opcheck, test_utils=(
        "test_faketensor", "test_aot_dispatch_static", "test_aot_dispatch_dynamic"))
    for fn in cases.QUANT_FUNCS:
        kw = cases.quant_inputs(fn, (3, 40), device, _gen(), scale=0.5)
        opcheck(getattr(ops, fn), (*kw.values(), torch.empty(3, 40, dtype=FP8, device=device)))
        schema = getattr(ops, fn).default._schema
        written = [a.name for a in schema.arguments if a.alias_info and a.alias_info.is_write]
        assert written == ["out"] and len(schema.returns) == 0


def test_compile_fullgraph_no_recompile_across_m(kernel, device):
    backend = "inductor" if device.type == "cuda" else "aot_eager"
    K, N = 40, 24

    def fn(x, w, bias, s, c):
        return (kernel.bf16_gemm_bias_gelu(x, w, bias), kernel.bf16_linear_bf16(x, w),
                kernel.bias_gelu_quantize_fp8_static_bf16(x, c, s),
                kernel.gelu_quantize_fp8_static_bf16(x, s),
                kernel.channel_scale_quantize_fp8_static_bf16(x, c, s))

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend=backend)

    def inputs(M):
        g = _gen(M)
        return ((torch.randn(M, K, generator=g) * 2).to(BF16).to(device),
                (torch.randn(K, N, generator=g) / K ** 0.5).to(BF16).to(device),
                (torch.randn(N, generator=g) * 0.5).to(BF16).to(device),
                torch.tensor([0.25], device=device),
                torch.randn(K, generator=g).to(BF16).to(device))

    compiled(*inputs(7))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for M in (5, 19, 33):
            args = inputs(M)
            for got, want in zip(compiled(*args), fn(*args)):
                assert _same_bits(got, want)


@pytest.mark.gpu
def test_cuda_graph_replay_matches_eager(kernel):
    """Captured quantizer and decode GEMMs (unsplit and split-K, whose arrival counters
    are zeroed inside the graph) replay on new inputs bit-identically to eager calls."""
    device = torch.device("cuda")
    q = cases.quant_inputs("bias_gelu_quantize_fp8_static_bf16", (64, 4096), device, _gen())
    g = cases.gemm_inputs("bf16_gemm_bias_gelu", 16, 4096, 4096, device, _gen())
    d = cases.gemm_inputs("bf16_linear_bias_bf16", 10, 4096, 1024, device, _gen())  # split K
    qo = torch.empty(64, 4096, dtype=FP8, device=device)
    go = torch.empty(16, 4096, dtype=BF16, device=device)
    do = torch.empty(10, 1024, dtype=BF16, device=device)

    def step():
        kernel.bias_gelu_quantize_fp8_static_bf16(**q, out=qo)
        kernel.bf16_gemm_bias_gelu(**g, out=go)
        kernel.bf16_linear_bias_bf16(**d, out=do)

    step()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    fq = cases.quant_inputs("bias_gelu_quantize_fp8_static_bf16", (64, 4096), device, _gen(7))
    fg = cases.gemm_inputs("bf16_gemm_bias_gelu", 16, 4096, 4096, device, _gen(7))
    fd = cases.gemm_inputs("bf16_linear_bias_bf16", 10, 4096, 1024, device, _gen(7))
    for t, f in ((q, fq), (g, fg), (d, fd)):
        for k in t:
            t[k].copy_(f[k])
    graph.replay()
    torch.cuda.synchronize()
    rq, rg, rd = qo.clone(), go.clone(), do.clone()
    step()
    torch.cuda.synchronize()
    assert _same_bits(rq, qo) and _same_bits(rg, go) and _same_bits(rd, do)


@pytest.mark.gpu
def test_cpu_tensor_rejected_on_gpu(kernel):
    kw = cases.quant_inputs("gelu_quantize_fp8_static_bf16", (4, 32), torch.device("cuda"),
                            _gen(), scale=0.5)
    kw["input"] = kw["input"].cpu()
    with pytest.raises(RuntimeError, match="input must be a CUDA tensor"):
        kernel.gelu_quantize_fp8_static_bf16(**kw)
