"""Tests of flashrt-fp8-swiglu-ffn, loaded through `kernels` from a fresh build.

On CPU the Triton kernels run in the interpreter (small ragged shapes); on a
GPU the same tests run natively, plus the spec's model shapes (cases.py),
CUDA-graph capture and compile with Inductor. Outputs are poisoned first. The
spec's bit-exact equalities (fused == staged, BF16 entry == FP8 entry,
compiled == eager, graph replay == eager) are checked bit for bit.
"""

import functools
import importlib

import pytest
import torch

from flashrt_tools.repo import ROOT, load_file
from flashrt_tools.tolerance import compare
from flashrt_tools.validation import (assert_fake_rejects_wrong_output_shapes,
                                      assert_op_equals_wrapper, reference_of, run_case)

cases = load_file(ROOT / "flashrt-fp8-swiglu-ffn" / "tests" / "cases.py",
                  "_flashrt_cases_flashrt_fp8_swiglu_ffn")

SEED = 1234
FP8, BF16 = torch.float8_e4m3fn, torch.bfloat16
ACTS = {"swiglu": ("silu", "silu_mul_merged_quantize_fp8_static_bf16"),
        "geglu": ("gelu", "gelu_mul_merged_quantize_fp8_static_bf16")}


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


def _assert_stages(kernel, act, kw, gu, hq, out):
    """Each stage of an FP8-entry MLP against the reference applied to our previous stage
    (a last-ulp GEMM difference moves FP8 codes downstream: see cases._mlp_expected)."""
    ref = reference_of(kernel)
    _ok("gemm", gu, ref.fp8_gemm_bf16(kw["input"], kw["gate_up_weight"], kw["input_scale"],
                                      kw["gate_up_weight_scale"]))
    _ok("fp8", hq, getattr(ref, ACTS[act][1])(gu, kw["hidden_scale"]))
    _ok("gemm", out, ref.fp8_gemm_bf16(hq, kw["down_weight"], kw["hidden_scale"],
                                       kw["down_weight_scale"]))


def _args(kw):
    return (kw["input"], kw["gate_up_weight"], kw["down_weight"], kw["input_scale"],
            kw["gate_up_weight_scale"], kw["hidden_scale"], kw["down_weight_scale"])


# --- accuracy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_matches_reference(kernel, device, case):
    verdicts, _ = run_case(kernel, reference_of(kernel), case, device, seed=SEED)
    for v in verdicts:
        assert v.ok, f"{case.id}: {v.message}"


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("shape", [(1, 32, 32, 48), (19, 96, 72, 40)], ids=str)
def test_mlp_every_buffer(kernel, device, shape, act):
    """gate_up_bf16, hidden_fp8 and out: all written, all checked, out returned."""
    M, K, H, N = shape
    kw = cases.mlp_inputs(M, K, H, N, device, _gen())
    gu, hq, out = (_poison((M, 2 * H), BF16, device), _poison((M, H), FP8, device),
                   _poison((M, N), BF16, device))
    got = getattr(kernel, f"fp8_{act}_mlp_bf16")(*_args(kw), gu, hq, out)
    assert got is out
    _assert_stages(kernel, act, kw, gu, hq, out)


@pytest.mark.parametrize("act", sorted(ACTS))
def test_act_quant_exact_pow2_scale(kernel, device, act):
    """Power-of-two scale: byte parity with the PyTorch reference (spec §2.4, §3.4)."""
    fn = ACTS[act][1]
    kw = cases.act_quant_inputs(8, 64, device, _gen(), scale=0.25)
    out = _poison((8, 64), FP8, device)
    assert getattr(kernel, fn)(**kw, out_fp8=out) is out
    assert _same_bits(out, getattr(reference_of(kernel), fn)(**kw))


def test_act_quant_saturates(kernel, device):
    """Products beyond +-448 * scale clamp to +-448 (codes 0x7E / 0xFE), never NaN."""
    gu = torch.tensor([[30.0, 30.0, 40.0, -40.0]], dtype=BF16, device=device)  # [gate | up]
    s = torch.tensor([0.5], device=device)
    for fn in (kernel.silu_mul_merged_quantize_fp8_static_bf16,
               kernel.gelu_mul_merged_quantize_fp8_static_bf16):
        assert fn(gu, s).view(torch.uint8).tolist() == [[0x7E, 0xFE]]


# --- bit-exact self-consistency ---------------------------------------------------------------


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("shape", [(1, 32, 32, 48), (33, 200, 68, 72), (260, 64, 24, 16),
                                   (3, 512, 32, 40), (2, 64, 512, 24)], ids=str)
def test_fused_equals_staged(kernel, device, shape, act):
    """fp8_gemm_bf16 -> *_mul_merged_quantize -> fp8_gemm_bf16 == the fused MLP, bit for bit.
    The last two shapes take the split-K swap kernel (gated up / down GEMM)."""
    M, K, H, N = shape
    kw = cases.mlp_inputs(M, K, H, N, device, _gen())
    x, GU, D, sx, sg, sh, sd = _args(kw)
    gu, hq = _poison((M, 2 * H), BF16, device), _poison((M, H), FP8, device)
    out = getattr(kernel, f"fp8_{act}_mlp_bf16")(*_args(kw), gu, hq)
    gu_s = kernel.fp8_gemm_bf16(x, GU, sx, sg)
    hq_s = getattr(kernel, ACTS[act][1])(gu_s, sh)
    out_s = kernel.fp8_gemm_bf16(hq_s, D, sh, sd)
    assert _same_bits(gu, gu_s) and _same_bits(hq, hq_s) and _same_bits(out, out_s)


def _both_entries(kernel, act, kw, dims, P, pad_to, device):
    """The BF16-entry MLP on poisoned buffers of P rows, then the FP8 entry on the
    input_fp8 it wrote: (returned out, BF16-entry buffers, FP8-entry outputs)."""
    K, H, N = dims
    bufs = (_poison((P, K), FP8, device), _poison((P, 2 * H), BF16, device),
            _poison((P, H), FP8, device), _poison((P, N), BF16, device))
    got = getattr(kernel, f"bf16_fp8_{act}_mlp_bf16")(*_args(kw), *bufs, pad_to=pad_to)
    fa = list(_args(kw))
    fa[0] = bufs[0]
    want = [torch.empty_like(b) for b in bufs[1:]]
    getattr(kernel, f"fp8_{act}_mlp_bf16")(*fa, *want)
    return got, bufs, want


def _bf16_entry_checked(kernel, act, kw, dims, P, pad_to, device):
    """The BF16 entry's input_fp8 equals the reference quantizer (pad rows included) and
    its other outputs equal the FP8 entry's on that input_fp8, bit for bit; returns
    (output, the BF16 entry's buffers)."""
    got, bufs, want = _both_entries(kernel, act, kw, dims, P, pad_to, device)
    assert _same_bits(bufs[0], reference_of(kernel).quantize_input(kw["input"],
                                                                   kw["input_scale"], pad_to=P))
    for a, b in zip(bufs[1:], want):
        assert _same_bits(a, b)
    return got, bufs


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("pad_to", [None, 16, 64], ids=lambda p: f"pad_to={p}")
def test_bf16_entry_equals_fp8_entry(kernel, device, pad_to, act):
    M, K, H, N = 9, 64, 24, 40
    P = M if pad_to is None else pad_to
    kw = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    got, bufs = _bf16_entry_checked(kernel, act, kw, (K, H, N), P, pad_to, device)
    assert got.shape == (M, N) and got.data_ptr() == bufs[3].data_ptr()


@pytest.mark.parametrize("act", sorted(ACTS))
def test_bf16_entry_quantizes_in_the_split_k_gated_gemm(kernel, device, act):
    """Decode rows: the gated up GEMM forms Q8(x) in its A load (gate and up halves)
    and writes input_fp8 as it goes, here over two K splits with a ragged K tail and
    pad rows: every output equals the FP8 entry on that input_fp8, bit for bit."""
    M, K, H, N, P = 3, 600, 24, 40, 16
    gemm = _gemm_module(kernel)
    cfg = gemm.gemm_config(P, 2 * H, K, device)
    assert cfg[0] == "swap" and cfg[4] > 1 and K % cfg[3] != 0, cfg
    kw = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    _bf16_entry_checked(kernel, act, kw, (K, H, N), P, P, device)


# --- bad inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [v[1] for v in ACTS.values()])
@pytest.mark.parametrize("kind,message", [
    ("odd_width", "gate_up_bf16.shape\\[1\\] must be even"),
    ("out_shape", "out_fp8 must have shape \\(gate_up_bf16.shape\\[0\\], "
                  "gate_up_bf16.shape\\[1\\] / 2\\)"),
    ("dtype", "gate_up_bf16 must have dtype torch.bfloat16"),
    ("scale", "output_scale must contain exactly one value"),
    ("out_rows", "out_fp8 must have shape \\(gate_up_bf16.shape\\[0\\], "
                 "gate_up_bf16.shape\\[1\\] / 2\\)"),
    ("out_dtype", "out_fp8 must have dtype torch.float8_e4m3fn"),
])
def test_act_quant_bad_inputs(kernel, device, fn, kind, message):
    kw = cases.act_quant_inputs(4, 128, device, _gen(), scale=0.5)
    out = _poison((4, 128), FP8, device)
    if kind == "odd_width":
        kw["gate_up_bf16"] = kw["gate_up_bf16"][:, :255].contiguous()
        out = _poison((4, 127), FP8, device)
    elif kind == "out_shape":
        out = _poison((4, 127), FP8, device)
    elif kind == "dtype":
        kw["gate_up_bf16"] = kw["gate_up_bf16"].half()
    elif kind == "out_rows":
        out = _poison((5, 128), FP8, device)
    elif kind == "out_dtype":
        out = _poison((4, 128), BF16, device)
    else:
        kw["output_scale"] = torch.ones(2, device=device)
    before = _bits(out)
    with pytest.raises(RuntimeError, match=message):
        getattr(kernel, fn)(**kw, out_fp8=out)
    assert torch.equal(_bits(out), before)


MLP_BAD = {
    "odd_gate_up": ("gate_up_weight", lambda t: t[:-1].contiguous(),
                    "gate_up_weight.shape\\[0\\] must be even"),
    "down_hidden": ("down_weight", lambda t: t[:, :-8].contiguous(),
                    "down_weight.shape\\[1\\] must match hidden size"),
    "k_mismatch": ("input", lambda t: t[:, :-16].contiguous(),
                   "input.shape\\[1\\] must match gate_up_weight.shape\\[1\\]"),
    "weight_dtype": ("down_weight", lambda t: t.to(BF16), "down_weight must have dtype "
                                                          "torch.float8_e4m3fn"),
    "scale_numel": ("hidden_scale", lambda t: torch.ones(3, device=t.device),
                    "hidden_scale must contain exactly one value"),
}


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("kind", sorted(MLP_BAD) + ["gate_up_bf16_shape", "hidden_fp8_shape",
                                                 "out_shape"])
def test_mlp_bad_inputs(kernel, device, kind, act):
    M, K, H, N = 4, 64, 128, 32
    kw = cases.mlp_inputs(M, K, H, N, device, _gen())
    bufs = [_poison((M, 2 * H), BF16, device), _poison((M, H), FP8, device),
            _poison((M, N), BF16, device)]
    if kind in MLP_BAD:
        name, edit, message = MLP_BAD[kind]
        kw[name] = edit(kw[name])
    elif kind == "hidden_fp8_shape":  # spec: [4, 255] for H = 256 -> here [4, H - 1]
        bufs[1], message = _poison((M, H - 1), FP8, device), "hidden_fp8 must have shape"
    elif kind == "gate_up_bf16_shape":
        bufs[0], message = _poison((M, 2 * H - 2), BF16, device), "gate_up_bf16 must have shape"
    else:
        bufs[2], message = _poison((M, N - 1), BF16, device), "out must have shape"
    before = [_bits(b) for b in bufs]
    with pytest.raises(RuntimeError, match=message):
        getattr(kernel, f"fp8_{act}_mlp_bf16")(*_args(kw), *bufs)
    for b, bb in zip(bufs, before):
        assert torch.equal(_bits(b), bb)


@pytest.mark.parametrize("act", sorted(ACTS))
def test_bf16_entry_padding_errors(kernel, device, act):
    M, K, H, N = 9, 64, 24, 40
    kw = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    call = getattr(kernel, f"bf16_fp8_{act}_mlp_bf16")
    with pytest.raises(ValueError, match="pad_to must be >= input.shape\\[0\\]"):
        call(*_args(kw), pad_to=M - 1)
    out = _poison((M, N), BF16, device)
    before = _bits(out)
    with pytest.raises((ValueError, RuntimeError), match="padded rows"):
        call(*_args(kw), out=out, pad_to=16)
    assert torch.equal(_bits(out), before)


def test_gemm_bad_inputs(kernel, device):
    kw = cases.gemm_inputs(4, 32, 16, device, _gen())
    out = _poison((4, 15), BF16, device)
    before = _bits(out)
    with pytest.raises(RuntimeError, match="out must have shape"):
        kernel.fp8_gemm_bf16(**kw, out=out)
    assert torch.equal(_bits(out), before)
    with pytest.raises(RuntimeError, match="input.shape\\[1\\] must match weight.shape\\[1\\]"):
        kernel.fp8_gemm_bf16(kw["input"][:, :16].contiguous(), kw["weight"], kw["input_scale"],
                             kw["weight_scale"])


@pytest.mark.gpu
def test_cpu_tensor_rejected_on_gpu(kernel):
    kw = cases.gemm_inputs(4, 32, 16, torch.device("cuda"), _gen())
    kw["weight"] = kw["weight"].cpu()
    with pytest.raises(RuntimeError, match="weight must be a CUDA tensor"):
        kernel.fp8_gemm_bf16(**kw)


# --- torch.library contracts, compile, CUDA graphs ----------------------------------------------


def _ops(kernel):
    return importlib.import_module(f"{kernel.__name__}._ops").ops


# opcheck's "test_schema" compares tensors with torch.allclose, which torch does not implement
# for float8 (every op here has FP8 tensors); test_schema_mutations checks the declarations.
OPCHECK_UTILS = ("test_faketensor", "test_aot_dispatch_static", "test_aot_dispatch_dynamic")
OUTPUT_ARGS = {"out", "out_fp8", "gate_up_bf16", "hidden_fp8", "input_fp8"}


def test_schema_mutations(kernel):
    ops = _ops(kernel)
    for name in kernel.__all__:
        schema = getattr(ops, name).default._schema
        assert len(schema.returns) == 0, name
        written = {a.name for a in schema.arguments if a.alias_info and a.alias_info.is_write}
        expected = {a.name for a in schema.arguments} & OUTPUT_ARGS
        if "merged_quantize" in name:  # gate_up_bf16 is the quantizers' input
            expected = {"out_fp8"}
        assert written == expected, name


def test_opcheck(kernel, device):
    ops = _ops(kernel)
    opcheck = functools.partial(torch.library.opcheck, test_utils=OPCHECK_UTILS)
    M, K, H, N = 5, 64, 24, 40
    e = lambda *s, dt=BF16: torch.empty(s, dtype=dt, device=device)  # noqa: E731
    g = cases.gemm_inputs(M, K, N, device, _gen())
    opcheck(ops.fp8_gemm_bf16, (g["input"], g["weight"], g["input_scale"], g["weight_scale"],
                                e(M, N)))
    a = cases.act_quant_inputs(M, H, device, _gen(), scale=0.25)
    m = cases.mlp_inputs(M, K, H, N, device, _gen())
    mb = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    for act, (_, qname) in ACTS.items():
        opcheck(getattr(ops, qname), (a["gate_up_bf16"], a["output_scale"], e(M, H, dt=FP8)))
        opcheck(getattr(ops, f"fp8_{act}_mlp_bf16"),
                (*_args(m), e(M, 2 * H), e(M, H, dt=FP8), e(M, N)))
        opcheck(getattr(ops, f"bf16_fp8_{act}_mlp_bf16"),
                (*_args(mb), e(8, K, dt=FP8), e(8, 2 * H), e(8, H, dt=FP8), e(8, N)))


def test_compile_fullgraph_no_recompile_across_m(kernel, device):
    """One dynamic graph serves every row count; compiled == eager bit for bit."""
    backend = "inductor" if device.type == "cuda" else "aot_eager"
    K, H, N = 64, 24, 40

    def fn(xb, x, gu_w, down, sxb, sx, sg, sh, sd, gu):
        a = kernel.bf16_fp8_swiglu_mlp_bf16(xb, gu_w, down, sxb, sg, sh, sd)
        b = kernel.fp8_geglu_mlp_bf16(x, gu_w, down, sx, sg, sh, sd)
        c = kernel.silu_mul_merged_quantize_fp8_static_bf16(gu, sh)
        d = kernel.gelu_mul_merged_quantize_fp8_static_bf16(gu, sh)
        e = kernel.fp8_gemm_bf16(x, gu_w, sx, sg)
        return a, b, c, d, e

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend=backend)

    def inputs(M):
        m = cases.mlp_inputs(M, K, H, N, device, _gen(M))
        mb = cases.mlp_inputs(M, K, H, N, device, _gen(M), bf16_entry=True)
        a = cases.act_quant_inputs(M, H, device, _gen(M + 1), scale=0.25)
        return (mb["input"], m["input"], m["gate_up_weight"], m["down_weight"],
                mb["input_scale"], m["input_scale"], m["gate_up_weight_scale"],
                m["hidden_scale"], m["down_weight_scale"], a["gate_up_bf16"])

    compiled(*inputs(7))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for M in (5, 19, 33):
            args = inputs(M)
            for got, want in zip(compiled(*args), fn(*args)):
                assert _same_bits(got, want)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(10, 1024, 4096, 1024), (300, 256, 192, 200)], ids=str)
def test_cuda_graph_replay_matches_eager(kernel, shape):
    """Decode rows (split-K swap kernel, PDL) and M >= 256 (the TMA kernel, gated and
    paired loops: tensor descriptors captured by value)."""
    device = torch.device("cuda")
    M, K, H, N = shape
    m = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    bufs = {act: (torch.empty(M, K, dtype=FP8, device=device),
                  torch.empty(M, 2 * H, dtype=BF16, device=device),
                  torch.empty(M, H, dtype=FP8, device=device),
                  torch.empty(M, N, dtype=BF16, device=device)) for act in ACTS}

    def step():
        for act in ACTS:
            getattr(kernel, f"bf16_fp8_{act}_mlp_bf16")(*_args(m), *bufs[act])

    step()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    fresh = cases.mlp_inputs(M, K, H, N, device, _gen(7), bf16_entry=True)
    for k in m:
        m[k].copy_(fresh[k])
    graph.replay()
    torch.cuda.synchronize()
    replayed = {act: [b.clone() for b in bufs[act]] for act in ACTS}
    step()
    torch.cuda.synchronize()
    for act in ACTS:
        for r, e in zip(replayed[act], bufs[act]):
            assert _same_bits(r, e)
    if M < 256:  # from 256 rows (TMA_MIN_M) the accumulation is _scaled_mm's, not the fp32
        # reference's: flashrt-fp8-ffn's test_large_m_is_as_accurate_as_scaled_mm holds it
        _ok("gemm", bufs["swiglu"][3], reference_of(kernel).bf16_fp8_swiglu_mlp_bf16(*_args(m)))


def test_direct_launch_equals_op(kernel, device):
    ops = _ops(kernel)
    M, K, H, N = 6, 64, 24, 40
    m = cases.mlp_inputs(M, K, H, N, device, _gen())
    out1 = kernel.fp8_swiglu_mlp_bf16(*_args(m))
    gu, hq, out2 = (torch.empty(M, 2 * H, dtype=BF16, device=device),
                    torch.empty(M, H, dtype=FP8, device=device), torch.empty_like(out1))
    ops.fp8_swiglu_mlp_bf16(*_args(m), gu, hq, out2)
    assert _same_bits(out1, out2)


# --- gaps found by mutation testing -------------------------------------------------------------


FUNCS = ("fp8_gemm_bf16", "silu_mul_merged_quantize_fp8_static_bf16",
         "gelu_mul_merged_quantize_fp8_static_bf16", "fp8_swiglu_mlp_bf16", "fp8_geglu_mlp_bf16",
         "bf16_fp8_swiglu_mlp_bf16", "bf16_fp8_geglu_mlp_bf16")


def _gemm_module(kernel):
    return importlib.import_module(kernel.__name__ + ".fp8_gemm")


def _op_args(name, device):
    """Valid positional arguments of op ``name`` (M = 5; BF16 entries P = 8 rows), outputs
    poisoned."""
    M, K, H, N, P = 5, 64, 24, 40, 8
    p = lambda *s, dt=BF16: _poison(s, dt, device)  # noqa: E731
    if name == "fp8_gemm_bf16":
        g = cases.gemm_inputs(M, K, N, device, _gen())
        return (g["input"], g["weight"], g["input_scale"], g["weight_scale"], p(M, N))
    if "merged_quantize" in name:
        a = cases.act_quant_inputs(M, H, device, _gen())
        return (a["gate_up_bf16"], a["output_scale"], p(M, H, dt=FP8))
    bf16 = name.startswith("bf16_")
    m = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=bf16)
    rows = P if bf16 else M
    return (_args(m) + ((p(P, K, dt=FP8),) if bf16 else ())
            + (p(rows, 2 * H), p(rows, H, dt=FP8), p(rows, N)))


@pytest.mark.parametrize("name", FUNCS)
def test_every_op_equals_its_wrapper(kernel, device, name):
    """Catches an op registered with the wrong activation: op == eager wrapper, bit for bit."""
    assert_op_equals_wrapper(getattr(_ops(kernel), name), getattr(kernel, name),
                             _op_args(name, device), _poison, _same_bits)


@pytest.mark.parametrize("name", FUNCS)
def test_fake_rejects_wrong_output_shapes(kernel, device, name):
    """Catches a fake (what torch.compile traces) that dropped an output-shape check."""
    assert_fake_rejects_wrong_output_shapes(getattr(_ops(kernel), name), _op_args(name, device))


def test_nan_quantizes_to_minus_448(kernel, device):
    """Catches a clamp that passes NaN or saturates it to +448: NaN must give -448 (code 0xFE)."""
    ref = reference_of(kernel)
    kw = cases.act_quant_inputs(3, 32, device, _gen(), scale=0.25)
    gu = kw["gate_up_bf16"]
    gu[0, 5] = float("nan")  # a gate
    gu[2, 32 + 7] = float("nan")  # an up
    for _, fn in ACTS.values():
        got = getattr(kernel, fn)(gu, kw["output_scale"])
        codes = got.view(torch.uint8)
        assert codes[0, 5].item() == 0xFE and codes[2, 7].item() == 0xFE, fn
        assert _same_bits(got, getattr(ref, fn)(gu, kw["output_scale"])), fn
    M, K, H, N = 3, 32, 16, 24
    m = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    m["input"][1, 4] = float("nan")
    qin = _poison((M, K), FP8, device)
    kernel.bf16_fp8_swiglu_mlp_bf16(*_args(m), input_fp8=qin)
    assert qin.view(torch.uint8)[1, 4].item() == 0xFE
    assert _same_bits(qin, ref.quantize_input(m["input"], m["input_scale"]))


@pytest.mark.parametrize("act", sorted(ACTS))
def test_quantize_kernel_zeroes_pad_rows(kernel, device, act):
    """Catches pad rows left unwritten by the standalone quantize kernel (the tile path)."""
    M, K, H, N, P = 20, 1100, 40, 24, 40  # K: two 1024-wide quantize blocks, ragged
    assert _gemm_module(kernel).gemm_config(P, 2 * H, K, device)[0] == "tile"
    kw = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    got, _ = _bf16_entry_checked(kernel, act, kw, (K, H, N), P, P, device)
    assert got.shape == (M, N)


@pytest.mark.parametrize("act", sorted(ACTS))
def test_act_quant_wide_ragged_rows(kernel, device, act):
    """Catches a merged-quantizer grid missing the columns past the last full 1024-wide block."""
    M, H = 3, 1100
    fn = ACTS[act][1]
    kw = cases.act_quant_inputs(M, H, device, _gen(), scale=0.25)
    out = _poison((M, H), FP8, device)
    getattr(kernel, fn)(**kw, out_fp8=out)
    _ok("fp8", out, getattr(reference_of(kernel), fn)(**kw))


def test_act_quant_multiplies_by_the_reciprocal(kernel, device):
    """Catches Q8 dividing by s or reassociating act * (up * r) instead of (act * up) * (1/s)."""
    M, H = 6, 64
    gen = _gen()
    s = 7 / 16
    g = 28.0 * 2 ** torch.randint(0, 2, (M, H), generator=gen).double()  # act(g) == g exactly
    i = torch.randint(8, 16, (M, H), generator=gen)
    e = torch.randint(-4, 4, (M, H), generator=gen).double()
    sign = torch.randint(0, 2, (M, H), generator=gen) * 2 - 1
    v = sign * ((2 * i + 1) * 2.0 ** e) * s  # FP8 midpoints * s, 8 significant bits
    u = v / g  # exact: g = 7 * 2^k
    gu = torch.cat([g, u], dim=1).to(BF16)
    assert torch.equal(gu.double(), torch.cat([g, u], dim=1))  # exact in bf16
    gu, scale = gu.to(device), cases._scale(s, device)
    for _, fn in ACTS.values():
        got = getattr(kernel, fn)(gu, scale)
        want = getattr(reference_of(kernel), fn)(gu, scale)
        assert _same_bits(got, want), fn
    gf, uf = gu[:, :H].float(), gu[:, H:].float()
    assert not _same_bits(((gf * uf) / scale).to(FP8), want)  # the data tells them apart
    assert not _same_bits((gf * (uf * (1.0 / scale))).to(FP8), want)


def test_pad_to_equal_to_rows_is_no_padding(kernel, device):
    """Catches an off-by-one pad_to check: pad_to == M is valid, the unpadded call."""
    M, K, H, N = 9, 64, 24, 40
    kw = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    for act in ACTS:
        call = getattr(kernel, f"bf16_fp8_{act}_mlp_bf16")
        assert _same_bits(call(*_args(kw), pad_to=M), call(*_args(kw)))


@pytest.mark.parametrize("act", sorted(ACTS))
def test_bf16_entry_rejects_longer_scratch(kernel, device, act):
    """Catches a one-sided row check: a scratch buffer with more than P rows is rejected too."""
    M, K, H, N, P = 9, 64, 24, 40, 16
    kw = cases.mlp_inputs(M, K, H, N, device, _gen(), bf16_entry=True)
    out = _poison((P + 8, N), BF16, device)
    before = _bits(out)
    with pytest.raises((ValueError, RuntimeError), match="padded rows"):
        getattr(kernel, f"bf16_fp8_{act}_mlp_bf16")(*_args(kw), out=out, pad_to=P)
    assert torch.equal(_bits(out), before)


@pytest.mark.parametrize("act", sorted(ACTS))
def test_each_scale_goes_to_its_gemm(kernel, device, act):
    """Catches a scale swap that the sweep hides (its input_scale == hidden_scale == 1/16)."""
    M, K, H, N = 7, 96, 40, 40
    kw = cases.mlp_inputs(M, K, H, N, device, _gen())
    kw["hidden_scale"] = cases._scale(0.1, device)  # not a power of two, != input_scale
    assert len({float(kw[k]) for k in ("input_scale", "gate_up_weight_scale", "hidden_scale",
                                       "down_weight_scale")}) == 4
    gu, hq = _poison((M, 2 * H), BF16, device), _poison((M, H), FP8, device)
    out = getattr(kernel, f"fp8_{act}_mlp_bf16")(*_args(kw), gu, hq)
    _assert_stages(kernel, act, kw, gu, hq, out)
