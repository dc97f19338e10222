"""Tests of flashrt-fp8-ffn, loaded through `kernels` from a fresh build.

On CPU the Triton kernels run in the interpreter (small ragged shapes); on a
GPU the same tests run natively, plus the spec's model shapes (cases.py),
CUDA-graph capture and compile with Inductor. Outputs are poisoned first so
an unwritten element fails. The spec's bit-exact equalities (fused == staged,
BF16 entry == FP8 entry, compiled == eager, graph replay == eager) are checked
bit for bit; accuracy against reference.py with the tolerances of cases.py.
"""

import functools
import importlib

import pytest
import torch

from flashrt_tools.repo import ROOT, load_file
from flashrt_tools.tolerance import compare, error_vs_fp64, fp8_product_fp64
from flashrt_tools.validation import (assert_fake_rejects_wrong_output_shapes,
                                      assert_op_equals_wrapper, reference_of, run_case)

cases = load_file(ROOT / "flashrt-fp8-ffn" / "tests" / "cases.py", "_flashrt_cases_flashrt_fp8_ffn")

SEED = 1234
FP8, BF16 = torch.float8_e4m3fn, torch.bfloat16
MLP_FUNCS = ("fp8_gelu_mlp_bf16", "fp8_gelu_mlp_v2_bf16")


def _gen(seed=SEED):
    return torch.Generator().manual_seed(seed)


def _poison(shape, dtype, device):
    if dtype == FP8:  # 0x7F: an E4M3 NaN code, never produced by the kernels
        return torch.full(shape, 0x7F, dtype=torch.uint8, device=device).view(FP8)
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def _bits(t):
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32}[t.element_size()]).clone()


def _same_bits(a, b):
    return a.shape == b.shape and torch.equal(_bits(a.contiguous()), _bits(b.contiguous()))


def _ok(fmt, got, want):
    v = compare(fmt, got, want, **cases.GEMM_TOL.get(fmt, {}))
    assert v.ok, v.message


def _mlp_args(kw):
    return (kw["input"], kw["up_weight"], kw["up_bias"], kw["down_weight"], kw["down_bias"],
            kw["input_scale"], kw["up_weight_scale"], kw["hidden_scale"], kw["down_weight_scale"])


# --- accuracy: every output of every function, ragged sizes ----------------------------------


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_matches_reference(kernel, device, case):
    verdicts, _ = run_case(kernel, reference_of(kernel), case, device, seed=SEED)
    for v in verdicts:
        assert v.ok, f"{case.id}: {v.message}"


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
@pytest.mark.parametrize("shape", [(1, 32, 64, 48), (19, 96, 136, 40)], ids=str)
def test_mlp_every_buffer(kernel, device, shape, v2):
    """hidden_bf16 (pre-bias up GEMM), hidden_fp8 and out: all written, all returned."""
    M, K, H, N = shape
    kw = cases.mlp_inputs(M, K, H, N, device, _gen())
    hb, hq, out = _poison((M, H), BF16, device), _poison((M, H), FP8, device), \
        _poison((M, N), BF16, device)
    fn = MLP_FUNCS[v2]
    got = getattr(kernel, fn)(*_mlp_args(kw), hb, hq, out)
    assert got is out
    want = reference_of(kernel).gelu_mlp_parts(*_mlp_args(kw), v2=v2)
    _ok("gemm", hb, want[0])
    _ok("fp8", hq, want[1])
    _ok("gemm", out, want[2])


def test_gelu_quant_buffers_returned(kernel, device):
    kw = cases.linear_inputs(5, 64, 40, device, _gen())
    hb, q = _poison((5, 40), BF16, device), _poison((5, 40), FP8, device)
    s_out = torch.tensor([cases.HIDDEN_SCALE], device=device)
    got = kernel.fp8_linear_bias_gelu_quant_bf16(**kw, output_scale=s_out, hidden_bf16=hb,
                                                 out_fp8=q)
    assert got[0] is hb and got[1] is q
    kw["output_scale"] = s_out
    want = cases._gelu_quant_expected(reference_of(kernel), got, (), kw)
    _ok("gemm", hb, want[0])
    _ok("fp8", q, want[1])


def test_identity_weight_is_exact(kernel, device):
    """W = identity (codes 1.0): every product and sum is exact, so out = bf16(x * sx * sw)
    bit for bit, whatever the accumulation policy; with bias the same plus one rounding."""
    M, K = 21, 48
    x = cases.fp8_codes((M, K), _gen(), device, 16.0)
    w = torch.eye(K, device=device).to(FP8)
    sx = torch.tensor([0.0625], device=device)
    sw = torch.tensor([0.5], device=device)
    b = cases.bias(K, _gen(7), device)
    want = (x.float() * (sx * sw)).to(BF16)
    assert _same_bits(kernel.fp8_gemm_bf16(x, w, sx, sw), want)
    want_b = (x.float() * (sx * sw) + b.float()).to(BF16)
    assert _same_bits(kernel.fp8_linear_bias_bf16(x, w, b, sx, sw), want_b)


def test_nan_quantizes_to_minus_448(kernel, device):
    """On CPU this relies on the interpreter's GPU NaN rule for min/max (_host.py)."""
    x = torch.randn(3, 32, generator=_gen()).to(BF16).to(device)
    x[1, 5] = float("nan")
    kw = cases.linear_inputs(3, 32, 16, device, _gen(), bf16_entry=True)
    kw["input"] = x
    q = _poison((3, 32), FP8, device)
    kernel.bf16_fp8_linear_bias_bf16(**kw, input_fp8=q)
    assert q.view(torch.uint8)[1, 5].item() == 0xFE  # -448
    assert _same_bits(q, reference_of(kernel).quantize_input(x, kw["input_scale"]))


# --- the spec's bit-exact self-consistency gates ----------------------------------------------


@pytest.mark.parametrize("shape", [(1, 32, 64, 48), (33, 200, 136, 72), (300, 64, 40, 24),
                                   (3, 512, 1024, 48), (2, 640, 48, 40)], ids=str)
def test_fused_equals_staged(kernel, device, shape):
    """The last two shapes take the split-K swap kernel (down / up GEMM)."""
    M, K, H, N = shape
    kw = cases.mlp_inputs(M, K, H, N, device, _gen())
    args = _mlp_args(kw)
    x, U, bu, D, bd, sx, su, sh, sd = args
    for v2 in (False, True):
        hb, hq = _poison((M, H), BF16, device), _poison((M, H), FP8, device)
        out = getattr(kernel, MLP_FUNCS[v2])(*args, hb, hq)
        # up half == fp8_linear_bias_gelu_quant_bf16
        h_s, q_s = kernel.fp8_linear_bias_gelu_quant_bf16(x, U, bu, sx, su, sh)
        assert _same_bits(hb, h_s) and _same_bits(hq, q_s)
        # hidden_bf16 == fp8_gemm_bf16 (pre-bias)
        assert _same_bits(hb, kernel.fp8_gemm_bf16(x, U, sx, su))
        if v2:  # bias inside the fp32 epilogue == fp8_linear_bias_bf16
            staged = kernel.fp8_linear_bias_bf16(hq, D, bd, sh, sd)
        else:  # fp8_gemm_bf16 -> + bias in fp32 -> bf16
            staged = (kernel.fp8_gemm_bf16(hq, D, sh, sd).float() + bd.float()).to(BF16)
        assert _same_bits(out, staged), f"v2={v2}"


def _mlp_both_entries(kernel, v2, m, dims, P, pad_to, device):
    """The BF16-entry GELU MLP (v2 or not) on poisoned buffers of P rows, then the FP8
    entry on the input_fp8 it wrote: (returned out, BF16-entry buffers, FP8-entry outputs)."""
    K, H, N = dims
    bufs = (_poison((P, K), FP8, device), _poison((P, H), BF16, device),
            _poison((P, H), FP8, device), _poison((P, N), BF16, device))
    got = getattr(kernel, "bf16_" + MLP_FUNCS[v2])(*_mlp_args(m), *bufs, pad_to=pad_to)
    fa = list(_mlp_args(m))
    fa[0] = bufs[0]
    want = [torch.empty_like(b) for b in bufs[1:]]
    getattr(kernel, MLP_FUNCS[v2])(*fa, *want)
    return got, bufs, want


@pytest.mark.parametrize("pad_to", [None, 16, 64], ids=lambda p: f"pad_to={p}")
def test_bf16_entry_equals_fp8_entry(kernel, device, pad_to):
    """input_fp8[:M] == reciprocal quantizer, pad rows FP8 zero, outputs == the FP8 entry
    over the same P rows; ``out[:M]`` is returned as a view of the caller's out."""
    M, K, H, N = 9, 64, 48, 40
    P = M if pad_to is None else pad_to
    ref = reference_of(kernel)
    kw = cases.linear_inputs(M, K, N, device, _gen(), bf16_entry=True)
    qin, out = _poison((P, K), FP8, device), _poison((P, N), BF16, device)
    got = kernel.bf16_fp8_linear_bias_bf16(**kw, input_fp8=qin, out=out, pad_to=pad_to)
    assert got.shape == (M, N) and got.data_ptr() == out.data_ptr()
    assert _same_bits(qin, ref.quantize_input(kw["input"], kw["input_scale"], pad_to=P))
    want = kernel.fp8_linear_bias_bf16(qin, kw["weight"], kw["bias"], kw["input_scale"],
                                       kw["weight_scale"])
    assert _same_bits(out, want)
    assert _same_bits(out[M:], kw["bias"].expand(P - M, N))  # pad rows: bf16(bias)

    m = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    for v2 in (False, True):
        fn = "bf16_" + MLP_FUNCS[v2]
        got, bufs, want = _mlp_both_entries(kernel, v2, m, (K, H, N), P, pad_to, device)
        assert got.shape == (M, N) and got.data_ptr() == bufs[3].data_ptr()
        assert _same_bits(bufs[0], ref.quantize_input(m["input"], m["input_scale"], pad_to=P))
        for a, b in zip(bufs[1:], want):
            assert _same_bits(a, b), fn


def test_bf16_entry_quantizes_in_the_split_k_gemm(kernel, device):
    """Decode rows: the up GEMM forms Q8(x) in its A load and writes input_fp8 as it goes,
    here over two K splits with a ragged K tail and pad rows: the same codes as the
    quantize kernel, the same outputs as the FP8 entry on them, bit for bit."""
    M, K, H, N, P = 3, 600, 48, 40, 16
    cfg = _gemm_module(kernel).gemm_config(P, H, K, device)
    assert cfg[0] == "swap" and cfg[4] > 1 and K % cfg[3] != 0, cfg
    m = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    l = cases.linear_inputs(M, K, H, device, _gen(), bf16_entry=True)
    qin, out = _poison((P, K), FP8, device), _poison((P, H), BF16, device)
    kernel.bf16_fp8_linear_bias_bf16(**l, input_fp8=qin, out=out, pad_to=P)
    assert _same_bits(qin, reference_of(kernel).quantize_input(l["input"], l["input_scale"],
                                                               pad_to=P))
    assert _same_bits(out, kernel.fp8_linear_bias_bf16(qin, l["weight"], l["bias"],
                                                       l["input_scale"], l["weight_scale"]))
    _, bufs, want = _mlp_both_entries(kernel, True, m, (K, H, N), P, P, device)
    for a, b in zip(bufs[1:], want):
        assert _same_bits(a, b)


def test_weight_written_by_the_previous_kernel(kernel, device):
    """Each GEMM launches before the previous kernel ends and prefetches its weight
    meanwhile (programmatic dependent launch on Hopper): into L2 only, so a weight
    that the previous kernel is still writing is read after the write lands. Here
    the weight of each GEMM is the FP8 output of the launch just before it."""
    M, K, H = 16, 512, 64
    sy, sq = cases._scale(1 / 16.0, device), cases._scale(cases.HIDDEN_SCALE, device)
    runs = []
    for i in range(4):
        kw = cases.linear_inputs(M, K, H, device, _gen(i))
        y = cases.fp8_codes((8, H), _gen(i + 10), device, 16.0)
        hq = _poison((M, H), FP8, device)
        kernel.fp8_linear_bias_gelu_quant_bf16(kw["input"], kw["weight"], kw["bias"],
                                               kw["input_scale"], kw["weight_scale"], sq,
                                               out_fp8=hq)
        runs.append((y, hq, kernel.fp8_gemm_bf16(y, hq, sy, sq)))  # weight [M, H] = hq
    if device.type == "cuda":
        torch.cuda.synchronize()
    for y, hq, got in runs:
        assert _same_bits(got, kernel.fp8_gemm_bf16(y, hq, sy, sq))
        _ok("gemm", got, reference_of(kernel).fp8_gemm_bf16(y, hq, sy, sq))


def test_padded_rows_from_input_fp8(kernel, device):
    """Without pad_to, a passed input_fp8 sets P (its rows)."""
    kw = cases.linear_inputs(5, 32, 16, device, _gen(), bf16_entry=True)
    qin = _poison((8, 32), FP8, device)
    got = kernel.bf16_fp8_linear_bias_bf16(**kw, input_fp8=qin)
    assert got.shape == (5, 16)
    assert (qin.view(torch.uint8)[5:] == 0).all()


# --- bad inputs: the spec's error, nothing written -------------------------------------------


def _linear_bad(kind, device):
    kw = cases.linear_inputs(4, 32, 16, device, _gen())
    out = _poison((4, 16), BF16, device)
    if kind == "input_dtype":
        kw["input"] = kw["input"].to(BF16)
    elif kind == "weight_dtype":
        kw["weight"] = kw["weight"].float()
    elif kind == "k_mismatch":
        kw["weight"] = kw["weight"][:, :16].contiguous()
    elif kind == "bias_length":
        kw["bias"] = kw["bias"][:15].contiguous()
    elif kind == "bias_dtype":
        kw["bias"] = kw["bias"].float()
    elif kind == "scale_numel":
        kw["input_scale"] = torch.ones(2, device=device)
    elif kind == "scale_dtype":
        kw["weight_scale"] = kw["weight_scale"].double()
    elif kind == "out_shape":
        out = _poison((4, 15), BF16, device)
    elif kind == "out_dtype":
        out = torch.full((4, 16), float("nan"), device=device)
    elif kind == "non_contiguous":
        kw["input"] = cases.fp8_codes((32, 4), _gen(), device, 16.0).t()
    elif kind == "rank":
        kw["input"] = kw["input"][0]
    elif kind == "empty":
        kw["input"] = kw["input"][:0]
    elif kind == "bias_rank":
        kw["bias"] = kw["bias"][:, None]
    elif kind == "empty_k":
        kw["input"], kw["weight"] = kw["input"][:, :0], kw["weight"][:, :0]
    return kw, out


LINEAR_BAD = {
    "input_dtype": "input must have dtype torch.float8_e4m3fn",
    "weight_dtype": "weight must have dtype torch.float8_e4m3fn",
    "k_mismatch": "input.shape\\[1\\] must match weight.shape\\[1\\]",
    "bias_length": "bias length must match weight.shape\\[0\\]",
    "bias_dtype": "bias must have dtype torch.bfloat16",
    "scale_numel": "input_scale must contain exactly one value",
    "scale_dtype": "weight_scale must have dtype torch.float32",
    "out_shape": "out must have shape \\(input.shape\\[0\\], weight.shape\\[0\\]\\)",
    "out_dtype": "out must have dtype torch.bfloat16",
    "non_contiguous": "input must be contiguous",
    "rank": "input must be 2-D",
    "empty": "input dimensions must be non-zero",
    "bias_rank": "bias length must match weight.shape\\[0\\]",
    "empty_k": "input dimensions must be non-zero",
}


@pytest.mark.parametrize("kind", sorted(LINEAR_BAD))
def test_linear_bias_bad_inputs(kernel, device, kind):
    kw, out = _linear_bad(kind, device)
    before = _bits(out)
    with pytest.raises(RuntimeError, match=LINEAR_BAD[kind]):
        kernel.fp8_linear_bias_bf16(**kw, out=out)
    assert torch.equal(_bits(out), before)


MLP_BAD = {
    "hidden_mismatch": ("down_weight", lambda t: t[:, :-8].contiguous(),
                        "up_weight.shape\\[0\\] must match down_weight.shape\\[1\\]"),
    "up_bias_length": ("up_bias", lambda t: t[:-1].contiguous(),
                       "up_bias length must match up_weight.shape\\[0\\]"),
    "down_bias_length": ("down_bias", lambda t: t[:-1].contiguous(),
                         "down_bias length must match down_weight.shape\\[0\\]"),
    "hidden_scale": ("hidden_scale", lambda t: torch.ones(1, 1, 2, device=t.device),
                     "hidden_scale must contain exactly one value"),
    "k_mismatch": ("input", lambda t: t[:, :-16].contiguous(),
                   "input.shape\\[1\\] must match up_weight.shape\\[1\\]"),
}


@pytest.mark.parametrize("fn", MLP_FUNCS)
@pytest.mark.parametrize("kind", sorted(MLP_BAD) + ["hidden_bf16_shape", "hidden_fp8_shape",
                                                 "out_shape"])
def test_mlp_bad_inputs(kernel, device, kind, fn):
    M, K, H, N = 4, 64, 48, 32
    kw = cases.mlp_inputs(M, K, H, N, device, _gen())
    bufs = [_poison((M, H), BF16, device), _poison((M, H), FP8, device),
            _poison((M, N), BF16, device)]
    if kind in MLP_BAD:
        name, edit, message = MLP_BAD[kind]
        kw[name] = edit(kw[name])
    elif kind == "hidden_fp8_shape":
        bufs[1], message = _poison((M, H - 1), FP8, device), "hidden_fp8 must have the shape"
    elif kind == "hidden_bf16_shape":
        bufs[0], message = _poison((M, H - 1), BF16, device), "hidden_bf16 must have shape"
    else:
        bufs[2], message = _poison((M, N + 1), BF16, device), "out must have shape"
    before = [_bits(b) for b in bufs]
    with pytest.raises(RuntimeError, match=message):
        getattr(kernel, fn)(*_mlp_args(kw), *bufs)
    for b, bb in zip(bufs, before):
        assert torch.equal(_bits(b), bb)


@pytest.mark.parametrize("fn", ["bf16_fp8_linear_bias_bf16", "bf16_fp8_gelu_mlp_bf16",
                                "bf16_fp8_gelu_mlp_v2_bf16"])
def test_bf16_entry_padding_errors(kernel, device, fn):
    M, K, H, N = 9, 64, 48, 40
    if fn == "bf16_fp8_linear_bias_bf16":
        kw = cases.linear_inputs(M, K, N, device, _gen(), bf16_entry=True)
        args, n_out = (), {"out": _poison((M, N), BF16, device)}
    else:
        kw = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
        args, n_out = (), {"out": _poison((M, N), BF16, device)}
    call = getattr(kernel, fn)
    with pytest.raises(ValueError, match="pad_to must be >= input.shape\\[0\\]"):
        call(*args, **kw, pad_to=M - 1)
    # short padded scratch: out has M rows while pad_to asks for 16
    before = _bits(n_out["out"])
    with pytest.raises((ValueError, RuntimeError), match="padded rows"):
        call(*args, **kw, **n_out, pad_to=16)
    assert torch.equal(_bits(n_out["out"]), before)
    with pytest.raises(RuntimeError, match="input must have dtype torch.bfloat16"):
        bad = dict(kw)
        bad["input"] = kw["input"].to(FP8)
        call(**bad)


@pytest.mark.gpu
def test_cpu_tensor_rejected_on_gpu(kernel):
    kw = cases.linear_inputs(4, 32, 16, torch.device("cuda"), _gen())
    kw["weight"] = kw["weight"].cpu()
    with pytest.raises(RuntimeError, match="weight must be a CUDA tensor"):
        kernel.fp8_linear_bias_bf16(**kw)


# --- torch.library contracts, torch.compile, CUDA graphs ---------------------------------------


def _ops(kernel):
    return importlib.import_module(f"{kernel.__name__}._ops").ops


# opcheck's "test_schema" compares tensors with torch.allclose, which torch does not
# implement for float8 (every op here takes FP8 tensors); the schema's mutation
# declarations are checked by test_schema_mutations instead.
OPCHECK_UTILS = ("test_faketensor", "test_aot_dispatch_static", "test_aot_dispatch_dynamic")
OUTPUT_ARGS = {"out", "out_fp8", "hidden_bf16", "hidden_fp8", "input_fp8"}


def test_schema_mutations(kernel):
    """Each op returns () and declares exactly its output buffers as mutated (Tensor!)."""
    ops = _ops(kernel)
    for name in kernel.__all__:
        schema = getattr(ops, name).default._schema
        assert len(schema.returns) == 0, name
        written = {a.name for a in schema.arguments if a.alias_info and a.alias_info.is_write}
        assert written == {a.name for a in schema.arguments} & OUTPUT_ARGS, name


def test_opcheck(kernel, device):
    ops = _ops(kernel)
    opcheck = functools.partial(torch.library.opcheck, test_utils=OPCHECK_UTILS)
    M, K, H, N = 5, 64, 48, 40
    kw = cases.linear_inputs(M, K, N, device, _gen())
    x, w, b, sx, sw = kw["input"], kw["weight"], kw["bias"], kw["input_scale"], kw["weight_scale"]
    so = torch.tensor([cases.HIDDEN_SCALE], device=device)
    e = lambda *s, dt=BF16: torch.empty(s, dtype=dt, device=device)  # noqa: E731
    opcheck(ops.fp8_gemm_bf16, (x, w, sx, sw, e(M, N)))
    opcheck(ops.fp8_linear_bias_bf16, (x, w, b, sx, sw, e(M, N)))
    opcheck(ops.fp8_linear_bias_gelu_quant_bf16,
                          (x, w, b, sx, sw, so, e(M, N), e(M, N, dt=FP8)))
    xb = cases.linear_inputs(M, K, N, device, _gen(), bf16_entry=True)
    opcheck(ops.bf16_fp8_linear_bias_bf16,
                          (xb["input"], w, b, xb["input_scale"], sw, e(8, K, dt=FP8), e(8, N)))
    m = cases.mlp_inputs(M, K, H, N, device, _gen())
    mb = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    for name in MLP_FUNCS:
        opcheck(getattr(ops, name),
                              (*_mlp_args(m), e(M, H), e(M, H, dt=FP8), e(M, N)))
        opcheck(getattr(ops, "bf16_" + name),
                              (*_mlp_args(mb), e(8, K, dt=FP8), e(8, H), e(8, H, dt=FP8),
                               e(8, N)))


def test_compile_fullgraph_no_recompile_across_m(kernel, device):
    """One dynamic graph serves every row count; compiled == eager bit for bit."""
    backend = "inductor" if device.type == "cuda" else "aot_eager"
    K, H, N = 64, 48, 40

    def fn(xb, x, up, bu, down, bd, sx, su, sh, sd, w, b):
        a = kernel.bf16_fp8_gelu_mlp_bf16(xb, up, bu, down, bd, sx, su, sh, sd)
        c = kernel.fp8_gelu_mlp_v2_bf16(x, up, bu, down, bd, sx, su, sh, sd)
        d = kernel.bf16_fp8_linear_bias_bf16(xb, w, b, sx, su)
        h, q = kernel.fp8_linear_bias_gelu_quant_bf16(x, up, bu, sx, su, sh)
        g = kernel.fp8_gemm_bf16(x, w, sx, su)
        return a, c, d, h, q, g

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend=backend)

    def inputs(M):
        m = cases.mlp_inputs(M, K, H, N, device, _gen(M))
        mb = cases.mlp_inputs(M, K, H, N, device, _gen(M), bf16_entry=True)
        w, _ = cases.fp8_weight(N, K, _gen(M + 1), device)
        return (mb["input"], m["input"], m["up_weight"], m["up_bias"], m["down_weight"],
                m["down_bias"], mb["input_scale"], m["up_weight_scale"], m["hidden_scale"],
                m["down_weight_scale"], w, cases.bias(N, _gen(3), device))

    compiled(*inputs(7))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for M in (5, 19, 33):
            args = inputs(M)
            for got, want in zip(compiled(*args), fn(*args)):
                assert _same_bits(got, want)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(10, 1024, 4096, 1024), (300, 256, 384, 200)], ids=str)
def test_cuda_graph_replay_matches_eager(kernel, shape):
    """Decode rows (split-K swap kernel, PDL) and M >= TMA_MIN_M (quantize kernel, then the
    TMA kernel: its tensor descriptors are captured by value)."""
    device = torch.device("cuda")
    M, K, H, N = shape
    m = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    l = cases.linear_inputs(M, K, N, device, _gen(), bf16_entry=True)
    bufs = {v2: (torch.empty(M, K, dtype=FP8, device=device),
                 torch.empty(M, H, dtype=BF16, device=device),
                 torch.empty(M, H, dtype=FP8, device=device),
                 torch.empty(M, N, dtype=BF16, device=device)) for v2 in (False, True)}
    lin = (torch.empty(M, K, dtype=FP8, device=device), torch.empty(M, N, dtype=BF16,
                                                                     device=device))

    def step():
        for v2 in (False, True):
            getattr(kernel, "bf16_" + MLP_FUNCS[v2])(*_mlp_args(m), *bufs[v2])
        kernel.bf16_fp8_linear_bias_bf16(**l, input_fp8=lin[0], out=lin[1])

    step()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    fresh = cases.mlp_inputs(M, K, H, N, device, _gen(7), bf16_entry=True)
    fresh_l = cases.linear_inputs(M, K, N, device, _gen(7), bf16_entry=True)
    for k in m:
        m[k].copy_(fresh[k])
    for k in l:
        l[k].copy_(fresh_l[k])
    graph.replay()
    torch.cuda.synchronize()
    replayed = [[b.clone() for b in bufs[v2]] for v2 in (False, True)] + [[b.clone()
                                                                          for b in lin]]
    step()
    torch.cuda.synchronize()
    eager = [list(bufs[v2]) for v2 in (False, True)] + [list(lin)]
    for r_list, e_list in zip(replayed, eager):
        for r, e in zip(r_list, e_list):
            assert _same_bits(r, e)
    if M < _gemm_module(kernel).TMA_MIN_M:  # from there the accumulation is _scaled_mm's, not
        # the fp32 reference's: test_large_m_is_as_accurate_as_scaled_mm holds that contract
        _ok("gemm", bufs[False][3], reference_of(kernel).bf16_fp8_gelu_mlp_bf16(*_mlp_args(m)))


def test_direct_launch_equals_op(kernel, device):
    ops = _ops(kernel)
    M, K, H, N = 6, 64, 48, 40
    m = cases.mlp_inputs(M, K, H, N, device, _gen())
    out1 = kernel.fp8_gelu_mlp_bf16(*_mlp_args(m))
    hb, hq, out2 = (torch.empty(M, H, dtype=BF16, device=device),
                    torch.empty(M, H, dtype=FP8, device=device), torch.empty_like(out1))
    ops.fp8_gelu_mlp_bf16(*_mlp_args(m), hb, hq, out2)
    assert _same_bits(out1, out2)



def _gemm_module(kernel):
    return importlib.import_module(kernel.__name__ + ".fp8_gemm")


@pytest.mark.parametrize("shape", [(5, 1000, 40), (40, 640, 56)], ids=str)
def test_split_k_is_deterministic_and_resets_its_counters(kernel, device, shape):
    """The split-K swap kernel: reached by the sweep's shapes, bit-identical over
    repeated calls (partials summed in split order whoever arrives last), and its
    arrival counters are back at zero after every call."""
    M, K, N = shape
    gemm = _gemm_module(kernel)
    cfg = gemm.gemm_config(M, N, K, device)
    assert cfg[0] == "swap" and cfg[4] > 1, cfg
    kw = cases.linear_inputs(M, K, N, device, _gen())
    first = kernel.fp8_linear_bias_bf16(**kw)
    for _ in range(5):
        assert _same_bits(kernel.fp8_linear_bias_bf16(**kw), first)
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert int(gemm._SPLIT_LOCKS.get(first.device, 1).abs().sum()) == 0  # the calls' buffer
    _ok("gemm", first, reference_of(kernel).fp8_linear_bias_bf16(**kw))


def _launch(gemm, cfg, kw, epi, device, **options):
    """fp8_linear_bias_bf16 (EPI_BIAS) or the GELU-quant epilogue through ``cfg``."""
    M, N = kw["input"].shape[0], kw["weight"].shape[0]
    c, q = _poison((M, N), BF16, device), _poison((M, N), FP8, device)
    so = cases._scale(cases.HIDDEN_SCALE, device)
    gemm.launch_with_config(cfg, gemm.uses_pdl(device), kw["input"], kw["weight"],
                            kw["input_scale"], kw["weight_scale"], c, bias=kw["bias"], so=so,
                            q=q, epi=epi, **options)
    return c, q


@pytest.mark.parametrize("options", [{"prefetch": False}, {"prefetch": True},
                                     {"early_release": False}], ids=str)
def test_sweep_launch_options_keep_the_bits(kernel, device, options):
    """The tuning sweep's launch options (the L2 weight prefetch of a PDL launch off / on
    whatever the weight size, the next kernel released after the K loop) change when
    bytes move, never what is computed: the package launch's bits, one and several K
    splits (on a GPU with PDL; without it the same launch)."""
    gemm = _gemm_module(kernel)
    for (M, K, N), epi in (((5, 1000, 40), gemm.EPI_BIAS), ((10, 256, 96), gemm.EPI_GELU_QUANT)):
        kw = cases.linear_inputs(M, K, N, device, _gen())
        cfg = gemm.gemm_config(M, N, K, device)
        got = _launch(gemm, cfg, kw, epi, device, **options)
        want = _launch(gemm, cfg, kw, epi, device)
        assert all(_same_bits(a, b) for a, b in zip(got, want)), (cfg, options)


def test_l2_prefetch_only_for_weights_up_to_16_mib(kernel):
    """The rule picks the prefetch per weight size: the 4 MB decoder weights and the 8 MB
    merged gate/up keep it, a 32 MB weight (16384 -> 2048, measured 18.5 us with it,
    13.9 without on H200) does without."""
    gemm = _gemm_module(kernel)
    w = lambda n, k: torch.empty((n, k), dtype=FP8, device="meta")  # noqa: E731
    assert gemm.prefetches(w(4096, 1024)) and gemm.prefetches(w(8192, 1024))
    assert gemm.prefetches(w(4096, 4096)) and not gemm.prefetches(w(4096, 4097))
    assert not gemm.prefetches(w(2048, 16384))


@pytest.mark.parametrize("spec", [(120, 32), (240, 32), (240, 64)], ids=str)
def test_decode_config_variants(kernel, device, spec):
    """``decode_config`` under the sweep's other split bounds and tile heights (32 rows:
    mma.sync instead of wgmma) stays correct, split-K included, and deterministic;
    ragged K and N."""
    gemm = _gemm_module(kernel)
    for M, K, N in ((10, 640, 96), (3, 600, 40)):
        cfg = gemm.decode_config(M, N, K, 132, *spec)  # the H100 / H200 rule: K split
        assert cfg[2] == spec[1] and cfg[4] > 1, cfg
        kw = cases.linear_inputs(M, K, N, device, _gen())
        out, _ = _launch(gemm, cfg, kw, gemm.EPI_BIAS, device)
        _ok("gemm", out, reference_of(kernel).fp8_linear_bias_bf16(**kw))
        assert _same_bits(out, _launch(gemm, cfg, kw, gemm.EPI_BIAS, device)[0])


@pytest.mark.parametrize("M,K,N,want", [
    (10, 1024, 4096, ("swap", 16, 32, 256, 1)),    # 128 tiles of 32 rows fit one wave
    (10, 1024, 8192, ("swap", 16, 64, 256, 1)),    # 128 tiles of 64: no split, 256-wide K
    (10, 4096, 1024, ("swap", 16, 64, 128, 8)),    # 16 tiles x 8 splits (best measured)
    (16, 16384, 2048, ("swap", 16, 64, 256, 4)),   # 32 tiles x 4 splits, 256-wide K steps
    (64, 4096, 1024, ("swap", 64, 64, 128, 8)),    # M <= 64 with few tiles: swap + split
    (64, 1024, 4096, ("tile", 64)),                # M <= 64 with many tiles: tile kernel
    (128, 4096, 1024, ("tile", 64)),               # below TMA_MIN_M: pointer tile kernel
    (512, 1024, 4096, ("tma", 128, 128)),          # 128 tiles of 128 x 128: one wave
    (512, 4096, 1024, ("tma", 64, 64)),            # a down projection: 128 tiles of 64 x 64
    (1024, 4096, 1024, ("tma", 64, 128)),          # 128 tiles of 64 x 128
    (560, 16384, 2048, ("tma", 128, 128)),         # 80 tiles beat 144 (two waves)
    (512, 1000, 4096, ("tile", 128)),              # K % 16 != 0: no tensor descriptor
], ids=str)
def test_gemm_config_at_132_sms(kernel, monkeypatch, M, K, N, want):
    """The launch rule at 132 SMs (H100, H200) picks the configurations the tuning sweep
    (benchmarks/tune_fp8_decode.py) measured best; a pure function of (M, N, K, device)."""
    gemm = _gemm_module(kernel)
    monkeypatch.setattr(gemm, "_sm_count", lambda device: 132)
    cfg = gemm.gemm_config.__wrapped__(M, N, K, torch.device("cuda"))
    assert cfg[:len(want)] == want, cfg


def test_gluon_kernel_only_on_the_verified_triton(kernel, monkeypatch):
    """Gluon's API moves between Triton releases: another release (or the interpreter,
    or a CPU tensor) runs the Triton TMA kernel instead of fp8_wgmma's."""
    ws = importlib.import_module(kernel.__name__ + ".fp8_wgmma")
    assert not ws.available(torch.device("cpu"))
    monkeypatch.setattr(ws.triton, "__version__", "3.7.0")
    assert not ws.toolchain_ok()
    monkeypatch.setattr(ws.triton, "__version__", "3.6.0")
    assert ws.toolchain_ok() == (ws.gluon is not None)


@pytest.mark.parametrize("gluon", [False, True], ids=["triton", "gluon"])
def test_tma_tile_weighs_the_gluon_kernel(kernel, monkeypatch, gluon):
    """Where fp8_wgmma's kernel runs the 128 x 128 tiles (faster than the Triton kernel on
    them), the SigLIP up GEMM at M = 512 (136 tiles of 128 x 128: two waves) takes them
    instead of 64 x 128; the down projections keep their 64-row tiles."""
    gemm = _gemm_module(kernel)
    ws = importlib.import_module(kernel.__name__ + ".fp8_wgmma")
    monkeypatch.setattr(gemm, "_sm_count", lambda device: 132)
    monkeypatch.setattr(ws, "available", lambda device: gluon)
    monkeypatch.setattr(ws, "IN_RULE", True)
    config = gemm.gemm_config.__wrapped__
    assert config(512, 4304, 1152, torch.device("cuda"))[:3] == (
        ("tma", 128, 128) if gluon else ("tma", 64, 128))
    assert config(512, 1024, 4096, torch.device("cuda"))[:3] == ("tma", 64, 64)
    assert config(1024, 1024, 4096, torch.device("cuda"))[:3] == ("tma", 64, 128)


@pytest.mark.parametrize("shape", [(300, 160, 72), (260, 96, 40)], ids=str)
def test_tma_kernel_equals_the_pointer_kernel(kernel, device, shape):
    """From TMA_MIN_M rows the persistent TMA kernel runs; the pointer tile kernel on the
    same tile (its fallback for unaligned operands) computes the same bits, for the plain
    (paired K loop) and the GELU-quant epilogue (promoted loop); ragged M, N and K tail
    (zero-filled by the descriptor). The interpreter accumulates in fp32: there the
    result also meets the package tolerance (on the GPU see the _scaled_mm test below)."""
    M, K, N = shape
    gemm = _gemm_module(kernel)
    cfg = gemm.gemm_config(M, N, K, device)
    assert cfg[0] == "tma", cfg
    kw = cases.linear_inputs(M, K, N, device, _gen())
    for epi in (gemm.EPI_BIAS, gemm.EPI_GELU_QUANT):
        got = _launch(gemm, cfg, kw, epi, device)
        # the fallback's launch: the TMA kernel's accumulation interval, not the tile rule's
        want = _launch(gemm, ("tile",) + cfg[1:7], kw, epi, device,
                       imprecise=gemm.TMA_IMPRECISE_ACC)
        assert all(_same_bits(a, b) for a, b in zip(got, want)), epi
    if device.type == "cpu":
        _ok("gemm", got[0], reference_of(kernel).fp8_gemm_bf16(
            kw["input"], kw["weight"], kw["input_scale"], kw["weight_scale"]))


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(300, 1040, 200), (2048, 384, 2048), (129, 256, 136)],
                         ids=str)
def test_warp_specialized_kernel_equals_the_triton_tma_kernel(kernel, shape):
    """On sm_90 a 128 x 128 TMA tile without a gated epilogue runs the Gluon kernel of
    fp8_wgmma.py; it computes the Triton TMA kernel's bits for every epilogue (h and the
    FP8 codes of GELU-quant), over ragged M / N, an odd K-block count (its phantom block),
    a K tail and several tiles per program."""
    M, K, N = shape
    device = torch.device("cuda")
    gemm = _gemm_module(kernel)
    ws = importlib.import_module(kernel.__name__ + ".fp8_wgmma")
    cfg = ("tma", 128, 128, 128, 8, 8, 4, 3)
    kw = cases.linear_inputs(M, K, N, device, _gen())
    assert ws.usable(kw["input"], cfg, gated=False)
    so = cases._scale(cases.HIDDEN_SCALE, device)
    for epi in (gemm.EPI_NONE, gemm.EPI_BIAS, gemm.EPI_BIAS_ROUNDED, gemm.EPI_GELU_QUANT):
        got = _poison((M, N), BF16, device), _poison((M, N), FP8, device)
        ws.launch(kw["input"], kw["weight"], kw["input_scale"], kw["weight_scale"], got[0],
                  kw["bias"], so, got[1], epi, gemm._sm_count(device))
        want = _launch(gemm, cfg, kw, epi, device, force_triton=True)
        assert _same_bits(got[0], want[0]), epi
        if epi == gemm.EPI_GELU_QUANT:
            assert _same_bits(got[1], want[1])


@pytest.mark.gpu
def test_wide_tiles_give_the_triton_kernels_bits(kernel):
    """The PI0.5 decoder up GEMM at 4096 rows gets 128 x 128 TMA tiles (the Gluon kernel's
    where ``fp8_wgmma.IN_RULE``), and fp8_gemm_bf16's result is the Triton kernel's."""
    M, K, N = 4096, 1024, 4096
    device = torch.device("cuda")
    gemm = _gemm_module(kernel)
    cfg = gemm.gemm_config(M, N, K, device)
    assert cfg[:3] == ("tma", 128, 128), cfg
    kw = cases.linear_inputs(M, K, N, device, _gen())
    x, w, sx, sw = kw["input"], kw["weight"], kw["input_scale"], kw["weight_scale"]
    want = torch.empty(M, N, dtype=BF16, device=device)
    gemm.launch_with_config(cfg, False, x, w, sx, sw, want, force_triton=True)
    assert _same_bits(kernel.fp8_gemm_bf16(x, w, sx, sw), want)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(512, 1024, 4096), (512, 4096, 1024), (304, 160, 80)],
                         ids=str)
def test_large_m_is_as_accurate_as_scaled_mm(kernel, shape):
    """The accumulation contract from TMA_MIN_M rows (TMA_IMPRECISE_ACC: one promotion per
    128-wide K block, torch._scaled_mm's interval): against an fp64 reference, no less
    accurate than torch._scaled_mm on the same operands. Promoting never (Triton's sm_90
    default) puts ~4x more outputs off the correctly rounded value and fails this."""
    M, K, N = shape
    device = torch.device("cuda")
    gemm = _gemm_module(kernel)
    assert gemm.gemm_config(M, N, K, device)[0] == "tma"
    kw = cases.linear_inputs(M, K, N, device, _gen())
    x, w, sx, sw = kw["input"], kw["weight"], kw["input_scale"], kw["weight_scale"]
    ref = fp8_product_fp64(x, w, sx, sw)
    ours = error_vs_fp64(kernel.fp8_gemm_bf16(x, w, sx, sw), ref)
    lib = error_vs_fp64(torch._scaled_mm(x, w.t(), scale_a=sx, scale_b=sw, out_dtype=BF16), ref)
    assert ours[0] <= lib[0] * 1.02 and ours[1] <= lib[1] * 1.05 + 1e-3, (ours, lib)


def test_unaligned_operands_take_the_pointer_kernel(kernel, device):
    """A tensor descriptor needs 16-byte aligned bases: an input that starts one byte into
    its storage runs on the pointer kernel with the same tile, with the same result as an
    aligned copy."""
    M, K, N = 300, 160, 72
    gemm = _gemm_module(kernel)
    assert gemm.gemm_config(M, N, K, device)[0] == "tma"
    kw = cases.linear_inputs(M, K, N, device, _gen())
    x = kw["input"]
    store = torch.empty(M * K + 1, dtype=torch.uint8, device=device)
    shifted = store[1:].view(FP8).view(M, K)
    shifted.copy_(x)
    assert shifted.data_ptr() % 16 != 0 and not gemm.tma_ready(shifted, kw["weight"])
    want = kernel.fp8_linear_bias_bf16(**kw)
    assert _same_bits(kernel.fp8_linear_bias_bf16(**dict(kw, input=shifted)), want)


# --- gaps found by mutation testing -------------------------------------------------------------


FUNCS = ("fp8_gemm_bf16", "fp8_linear_bias_bf16", "fp8_linear_bias_gelu_quant_bf16",
         "fp8_gelu_mlp_bf16", "fp8_gelu_mlp_v2_bf16", "bf16_fp8_linear_bias_bf16",
         "bf16_fp8_gelu_mlp_bf16", "bf16_fp8_gelu_mlp_v2_bf16")


def _op_args(name, device):
    """Valid positional arguments of op ``name`` (M = 5; BF16 entries P = 8 rows), outputs
    poisoned."""
    M, K, H, N, P = 5, 64, 48, 40, 8
    p = lambda *s, dt=BF16: _poison(s, dt, device)  # noqa: E731
    bf16 = name.startswith("bf16_")
    if "mlp" in name:
        m = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=bf16)
        rows = P if bf16 else M
        return (_mlp_args(m) + ((p(P, K, dt=FP8),) if bf16 else ())
                + (p(rows, H), p(rows, H, dt=FP8), p(rows, N)))
    kw = cases.linear_inputs(M, K, N, device, _gen(), bf16_entry=bf16,
                             with_bias=name != "fp8_gemm_bf16")
    ins = ((kw["input"], kw["weight"]) + ((kw["bias"],) if "bias" in kw else ())
           + (kw["input_scale"], kw["weight_scale"]))
    if name == "fp8_linear_bias_gelu_quant_bf16":
        return ins + (cases._scale(cases.HIDDEN_SCALE, device), p(M, N), p(M, N, dt=FP8))
    return ins + ((p(P, K, dt=FP8), p(P, N)) if bf16 else (p(M, N),))


@pytest.mark.parametrize("name", FUNCS)
def test_every_op_equals_its_wrapper(kernel, device, name):
    """Catches an op registered with the wrong epilogue / v2 flag: op == wrapper, bit for bit."""
    assert_op_equals_wrapper(getattr(_ops(kernel), name), getattr(kernel, name),
                             _op_args(name, device), _poison, _same_bits)


@pytest.mark.parametrize("name", FUNCS)
def test_fake_rejects_wrong_output_shapes(kernel, device, name):
    """Catches a fake (what torch.compile traces) that dropped an output-shape check."""
    assert_fake_rejects_wrong_output_shapes(getattr(_ops(kernel), name), _op_args(name, device))


def test_gemm_and_linear_write_the_passed_out(kernel, device):
    """Catches fp8_gemm_bf16 / fp8_linear_bias_bf16 ignoring a caller's out."""
    kw = cases.linear_inputs(7, 96, 40, device, _gen())
    out = _poison((7, 40), BF16, device)
    assert kernel.fp8_linear_bias_bf16(**kw, out=out) is out
    assert _same_bits(out, kernel.fp8_linear_bias_bf16(**kw))
    del kw["bias"]
    out = _poison((7, 40), BF16, device)
    assert kernel.fp8_gemm_bf16(**kw, out=out) is out
    assert _same_bits(out, kernel.fp8_gemm_bf16(**kw))


def test_gelu_quant_bad_inputs(kernel, device):
    """Catches dropped output_scale / hidden_bf16 / out_fp8 checks of the GELU-quant wrapper."""
    kw = cases.linear_inputs(4, 32, 16, device, _gen())
    so = cases._scale(cases.HIDDEN_SCALE, device)
    for kind, message in (("scale", "output_scale must contain exactly one value"),
                          ("hidden", "hidden_bf16 must have shape"),
                          ("out_fp8", "out_fp8 must have shape")):
        hb, q = _poison((4, 16), BF16, device), _poison((4, 16), FP8, device)
        s = torch.ones(2, device=device) if kind == "scale" else so
        if kind == "hidden":
            hb = _poison((4, 15), BF16, device)
        elif kind == "out_fp8":
            q = _poison((5, 16), FP8, device)
        before = [_bits(hb), _bits(q)]
        with pytest.raises(RuntimeError, match=message):
            kernel.fp8_linear_bias_gelu_quant_bf16(**kw, output_scale=s, hidden_bf16=hb,
                                                   out_fp8=q)
        assert torch.equal(_bits(hb), before[0]) and torch.equal(_bits(q), before[1])


def test_quantize_kernel_zeroes_pad_rows(kernel, device):
    """Catches pad rows left unwritten by the standalone quantize kernel (the tile path)."""
    M, K, H, N, P = 20, 1100, 80, 40, 40  # K: two 1024-wide quantize blocks, ragged
    gemm = _gemm_module(kernel)
    assert gemm.gemm_config(P, 72, K, device)[0] == "tile"
    assert gemm.gemm_config(P, H, K, device)[0] == "tile"
    ref = reference_of(kernel)
    kw = cases.linear_inputs(M, K, 72, device, _gen(), bf16_entry=True)
    qin, out = _poison((P, K), FP8, device), _poison((P, 72), BF16, device)
    got = kernel.bf16_fp8_linear_bias_bf16(**kw, input_fp8=qin, out=out, pad_to=P)
    assert got.shape == (M, 72)
    assert _same_bits(qin, ref.quantize_input(kw["input"], kw["input_scale"], pad_to=P))
    assert _same_bits(out, kernel.fp8_linear_bias_bf16(qin, kw["weight"], kw["bias"],
                                                       kw["input_scale"], kw["weight_scale"]))
    assert _same_bits(out[M:], kw["bias"].expand(P - M, 72))
    m = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    for v2 in (False, True):
        _, bufs, want = _mlp_both_entries(kernel, v2, m, (K, H, N), P, P, device)
        assert _same_bits(bufs[0], ref.quantize_input(m["input"], m["input_scale"], pad_to=P))
        for a, b in zip(bufs[1:], want):
            assert _same_bits(a, b)


def test_pad_to_equal_to_rows_is_no_padding(kernel, device):
    """Catches an off-by-one pad_to check: pad_to == M is valid, the unpadded call."""
    M, K, H, N = 9, 64, 48, 40
    kw = cases.linear_inputs(M, K, N, device, _gen(), bf16_entry=True)
    assert _same_bits(kernel.bf16_fp8_linear_bias_bf16(**kw, pad_to=M),
                      kernel.bf16_fp8_linear_bias_bf16(**kw))
    m = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    for fn in MLP_FUNCS:
        call = getattr(kernel, "bf16_" + fn)
        assert _same_bits(call(*_mlp_args(m), pad_to=M), call(*_mlp_args(m)))


def test_thor_pads_mid_rows_to_a_multiple_of_64(kernel, monkeypatch):
    """Catches a wrong default padding rule (§1.3: Thor pads 9 <= M <= 128 to ceil(M/64)*64).
    ``padded_rows`` is common/fp8_gemm.py's, the same file in fp8-swiglu-ffn (kept identical
    by ``flashrt check``), so it is tested here once."""
    gemm = _gemm_module(kernel)
    x = lambda m: torch.empty((m, 8), dtype=BF16, device="meta")  # noqa: E731
    want = {1: 1, 8: 8, 9: 64, 63: 64, 64: 64, 65: 128, 128: 128, 129: 129, 300: 300}
    assert not gemm._pads_mid_rows(torch.device("cpu"))
    monkeypatch.setattr(gemm, "_pads_mid_rows", lambda device: True)
    assert {m: gemm.padded_rows(x(m), None, None) for m in want} == want
    assert gemm.padded_rows(x(10), 16, None) == 16  # pad_to first
    assert gemm.padded_rows(x(10), None, torch.empty((12, 8), dtype=FP8, device="meta")) == 12
    monkeypatch.setattr(gemm, "_pads_mid_rows", lambda device: False)
    assert all(gemm.padded_rows(x(m), None, None) == m for m in want)


@pytest.mark.parametrize("fn", ["bf16_fp8_linear_bias_bf16", "bf16_fp8_gelu_mlp_bf16",
                                "bf16_fp8_gelu_mlp_v2_bf16"])
def test_bf16_entry_rejects_longer_scratch(kernel, device, fn):
    """Catches a one-sided row check: a scratch buffer with more than P rows is rejected too."""
    M, K, H, N, P = 9, 64, 48, 40, 16
    if fn == "bf16_fp8_linear_bias_bf16":
        kw = cases.linear_inputs(M, K, N, device, _gen(), bf16_entry=True)
    else:
        kw = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    out = _poison((P + 8, N), BF16, device)
    before = _bits(out)
    with pytest.raises((ValueError, RuntimeError), match="padded rows"):
        getattr(kernel, fn)(**kw, out=out, pad_to=P)
    assert torch.equal(_bits(out), before)


def _on_midpoints(i, e, s):
    """FP8 rounding midpoints (2i + 1) * 2^e (i in 8..15) times s: 8 significant bits for
    s = 7 * 2^k, exact in bf16. Q8 by x * fp32(1/s) and by x / s round some of them apart."""
    return ((2 * i + 1) * 2.0 ** e) * s


@pytest.mark.parametrize("M,N", [(5, 16), (20, 72)], ids=str)
def test_gelu_requant_multiplies_by_the_reciprocal(kernel, device, M, N):
    """Catches the GELU-quant epilogue dividing by s instead of multiplying by fp32(1/s)."""
    gen = _gen()
    i = torch.randint(8, 16, (M, N), generator=gen)
    j = torch.randint(1, 4, (N,), generator=gen)
    # identity weight: h = bf16(x * 7/16) exact; h + b on midpoints * 7/16, >= 14.875,
    # where GELU(v) = v exactly (tanh saturates), on any exp / tanh
    x = (i * 2.0 ** (j + 1)).to(FP8).to(device)
    w = torch.eye(N).to(FP8).to(device)
    b = ((7 / 16) * 2.0 ** j).to(BF16).to(device)
    s7, one = cases._scale(7 / 16, device), cases._scale(1.0, device)
    cfg = _gemm_module(kernel).gemm_config(M, N, N, device)
    assert cfg[0] == ("swap" if M <= 16 else "tile"), cfg
    h, q = kernel.fp8_linear_bias_gelu_quant_bf16(x, w, b, s7, one, s7)
    want_h, want_q = reference_of(kernel).fp8_linear_bias_gelu_quant_bf16(x, w, b, s7, one, s7)
    v = h.float() + b.float()
    assert torch.equal(v.double(), _on_midpoints(i, j, 7 / 16).double().to(device))
    assert _same_bits(h, want_h) and _same_bits(q, want_q)
    assert not _same_bits((v / s7).clamp(-448, 448).to(FP8), want_q)  # the data discriminates


@pytest.mark.parametrize("M,N", [(5, 40), (20, 72)], ids=str)
def test_input_quantizer_multiplies_by_the_reciprocal(kernel, device, M, N):
    """Catches the BF16-entry quantizers (A load, quantize kernel) dividing by s."""
    K = 48
    gen = _gen()
    i = torch.randint(8, 16, (M, K), generator=gen)
    e = torch.randint(-4, 4, (M, K), generator=gen).double()
    sign = torch.randint(0, 2, (M, K), generator=gen) * 2 - 1
    s = 7 / 256
    x = (sign * _on_midpoints(i, e, s)).to(BF16).to(device)
    assert torch.equal(x.double().cpu(), sign * _on_midpoints(i, e, s))  # exact in bf16
    kw = cases.linear_inputs(M, K, N, device, _gen(), bf16_entry=True)
    kw["input"], kw["input_scale"] = x, cases._scale(s, device)
    cfg = _gemm_module(kernel).gemm_config(M, N, K, device)
    assert cfg[0] == ("swap" if M <= 16 else "tile"), cfg
    qin = _poison((M, K), FP8, device)
    kernel.bf16_fp8_linear_bias_bf16(**kw, input_fp8=qin)
    want = reference_of(kernel).quantize_input(x, kw["input_scale"])
    assert _same_bits(qin, want)
    assert not _same_bits((x.float() / kw["input_scale"]).to(FP8), want)
