"""Tests of flashrt-vla-video, loaded through `kernels` from a fresh build.

On CPU the Triton kernels run in the interpreter (small shapes); on a GPU the
same tests run natively, plus Wan-sized cases, CUDA-graph capture and compile
with Inductor. Every output is checked against reference.py (tolerances in
flashrt_tools.tolerance), outputs are poisoned first so unwritten elements fail.
"""

import importlib

import pytest
import torch

from flashrt_tools.repo import ROOT, load_file
from flashrt_tools.tolerance import compare
from flashrt_tools.validation import as_tuple, reference_of, run_case

cases = load_file(ROOT / "flashrt-vla-video" / "tests" / "cases.py", "_flashrt_cases_flashrt_vla_video")

GEN_SEED = 1234


def _gen():
    return torch.Generator().manual_seed(GEN_SEED)


def _poisoned_like(t):
    return torch.full_like(t, float("nan"))


def _bits(t):
    return t.view(torch.int16).clone()


# --- accuracy: every output of every function, ragged sizes ---------------------------------


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_matches_reference(kernel, device, case):
    verdicts, _ = run_case(kernel, reference_of(kernel), case, device, seed=GEN_SEED)
    for v in verdicts:
        assert v.ok, f"{case.id}: {v.message}"


def test_q_out_buffer_is_written_and_returned(kernel, device):
    kw = cases.decode_inputs((3, 2, 128), device, _gen())
    out = _poisoned_like(kw["q"])
    got = kernel.q_norm_rope_bf16(kw["q"], kw["weight"], kw["cos"], kw["sin"], out)
    assert got is out
    ref = reference_of(kernel).q_norm_rope_bf16(**kw)
    assert compare("bf16", out, ref).ok


def test_k_v_out_buffers_are_written_and_returned(kernel, device):
    kw = cases.decode_inputs((5, 128), device, _gen(), with_v=True)
    k_out, v_out = _poisoned_like(kw["k"]), _poisoned_like(kw["v"])
    got = kernel.k_norm_rope_v_cache_bf16(**kw, k_out=k_out, v_out=v_out, eps=1e-5)
    assert got[0] is k_out and got[1] is v_out
    ref_k, ref_v = reference_of(kernel).k_norm_rope_v_cache_bf16(**kw, eps=1e-5)
    assert compare("bf16", k_out, ref_k).ok
    assert compare("exact", v_out, ref_v).ok


@pytest.mark.parametrize("seq_len", [0, 3, 9, 12], ids=lambda s: f"seq_len={s}")
def test_qkv_out_buffers_and_seq_len(kernel, device, seq_len):
    """seq_len gates RoPE per token (0: none rotated; > L allowed up to the table size)."""
    B, L, H, hd = 2, 9, 2, 16
    kw = cases.qkv_inputs(B, L, H, hd, device, _gen(), table_rows=12)
    q_out = torch.full((B, L, H, hd), float("nan"), dtype=torch.bfloat16, device=device)
    k_out = _poisoned_like(q_out)
    got = kernel.qkv_split_norm_rope_bf16(**kw, heads=H, head_dim=hd, seq_len=seq_len,
                                          q_out=q_out, k_out=k_out)
    assert got[0] is q_out and got[1] is k_out
    ref = reference_of(kernel).qkv_split_norm_rope_bf16(**kw, heads=H, head_dim=hd,
                                                        seq_len=seq_len)
    for g, r in zip(got, ref):
        assert compare("bf16", g, r).ok
    if seq_len == 0:  # nothing rotated: equals plain whole-hidden RMSNorm
        n = reference_of(kernel).rms_norm_fp32(kw["packed_qkv"][..., : H * hd],
                                               kw["norm_q_weight"], 1e-6)
        assert compare("bf16", q_out.reshape(B, L, H * hd), n.to(torch.bfloat16)).ok


def _mismatch_rate(got, ref):
    return (_bits(got) != _bits(ref)).double().mean().item()


@pytest.mark.parametrize("eps", [None, 1e-4], ids=lambda e: f"eps={e or 'default'}")
def test_eps_inside_the_root_at_small_magnitude(kernel, device, eps):
    """Catches an ignored or wrong-default eps, or eps added outside the rsqrt (mean(x^2) ~ eps)."""
    ref = reference_of(kernel)
    extra = {} if eps is None else {"eps": eps}
    d = cases.decode_inputs((3, 2, 128), device, _gen(), with_v=True)
    d["k"] = d["k"] * 1e-3  # mean(x^2) ~ 4e-6: eps moves r by a large factor
    q = kernel.q_norm_rope_bf16(d["k"], d["weight"], d["cos"], d["sin"], **extra)
    v = compare("bf16", q, ref.q_norm_rope_bf16(d["k"], d["weight"], d["cos"], d["sin"], **extra))
    assert v.ok, v.message
    got_k, got_v = kernel.k_norm_rope_v_cache_bf16(**d, **extra)
    want_k, want_v = ref.k_norm_rope_v_cache_bf16(**d, **extra)
    v = compare("bf16", got_k, want_k)
    assert v.ok, v.message
    assert compare("exact", got_v, want_v).ok
    B, L, H, hd = 2, 5, 3, 16
    kw = cases.qkv_inputs(B, L, H, hd, device, _gen(), table_rows=8)
    kw["packed_qkv"] = kw["packed_qkv"] * 1e-3
    got = kernel.qkv_split_norm_rope_bf16(**kw, heads=H, head_dim=hd, **extra)
    want = ref.qkv_split_norm_rope_bf16(**kw, heads=H, head_dim=hd, **extra)
    for g, w in zip(got, want):
        v = compare("bf16", g, w)
        assert v.ok, v.message


def test_outputs_are_nearly_bit_equal_to_reference(kernel, device):
    """Catches sub-ulp scale errors (e.g. an RMS mean over D - 1) that 1-ulp tolerance hides:
    only fp32 sum-order ties may differ, far below 1% of the outputs."""
    ref = reference_of(kernel)
    kw = cases.decode_inputs((64, 128), device, _gen())
    assert _mismatch_rate(kernel.q_norm_rope_bf16(**kw), ref.q_norm_rope_bf16(**kw)) < 0.01
    kw = cases.qkv_inputs(2, 16, 4, 32, device, _gen())
    got = kernel.qkv_split_norm_rope_bf16(**kw, heads=4, head_dim=32)
    want = ref.qkv_split_norm_rope_bf16(**kw, heads=4, head_dim=32)
    for g, w in zip(got, want):
        assert _mismatch_rate(g, w) < 0.01


def test_qkv_late_load_variant_matches_reference(kernel, device, monkeypatch):
    """Catches bugs in the EARLY_LOADS=False branch (grids over 12 programs per SM), which
    the small sweep never takes: pinned to 1 SM, the late variant runs, equal to the early one."""
    pp = importlib.import_module(f"{kernel.__name__}.postprocess")
    B, L, H, hd, seq_len = 2, 13, 8, 128, 9  # D = 1024: 2 tokens per program, 13 programs
    kw = cases.qkv_inputs(B, L, H, hd, device, _gen(), table_rows=16)
    early = [t.clone() for t in kernel.qkv_split_norm_rope_bf16(**kw, heads=H, head_dim=hd,
                                                                seq_len=seq_len)]
    monkeypatch.setattr(pp, "sm_count", lambda device, interpreted=1: 1)
    assert pp._qkv_launch_config(H * hd, B * L, device)[3] is False
    q_out = torch.full((B, L, H, hd), float("nan"), dtype=torch.bfloat16, device=device)
    k_out = _poisoned_like(q_out)
    kernel.qkv_split_norm_rope_bf16(**kw, heads=H, head_dim=hd, seq_len=seq_len,
                                    q_out=q_out, k_out=k_out)
    want = reference_of(kernel).qkv_split_norm_rope_bf16(**kw, heads=H, head_dim=hd,
                                                         seq_len=seq_len)
    for g, w, e in zip((q_out, k_out), want, early):
        v = compare("bf16", g, w)
        assert v.ok, v.message
        assert torch.equal(_bits(g), _bits(e))


def test_qkv_ignores_v_section(kernel, device):
    B, L, H, hd = 1, 5, 2, 8
    kw = cases.qkv_inputs(B, L, H, hd, device, _gen())
    first = [t.clone() for t in kernel.qkv_split_norm_rope_bf16(**kw, heads=H, head_dim=hd)]
    kw["packed_qkv"][..., 2 * H * hd:] = 1e4  # change only V
    second = kernel.qkv_split_norm_rope_bf16(**kw, heads=H, head_dim=hd)
    for a, b in zip(first, second):
        assert torch.equal(_bits(a), _bits(b))


# --- bad inputs: the spec's error, nothing written ---------------------------------------------

def _decode_bad(kind):
    """(function, kwargs builder, expected message) for q_norm_rope_bf16 misuse."""
    def build(device):
        kw = cases.decode_inputs((4, 128), device, _gen())
        kw["out"] = _poisoned_like(kw["q"])
        if kind == "dtype":
            kw["q"] = kw["q"].float()
        elif kind == "rank":
            kw["q"], kw["out"] = kw["q"][0], kw["out"][0]
        elif kind == "last_dim":
            kw["q"] = kw["q"][:, :64].contiguous()
        elif kind == "contiguity":
            kw["q"] = torch.empty(128, 4, dtype=torch.bfloat16, device=device).t()
        elif kind == "weight_shape":
            kw["weight"] = kw["weight"][:64]
        elif kind == "cos_shape":
            kw["cos"] = torch.ones(128, dtype=torch.bfloat16, device=device)
        elif kind == "cos_dtype":
            kw["cos"] = kw["cos"].float()
        elif kind == "out_shape":
            kw["out"] = torch.full((5, 128), float("nan"), dtype=torch.bfloat16, device=device)
        elif kind == "empty":
            kw["q"], kw["out"] = kw["q"][:0], kw["out"][:0]
        return kw
    return build


DECODE_BAD = {
    "dtype": "q must have dtype torch.bfloat16",
    "rank": "q must have at least 2 dimensions",
    "last_dim": "q last dimension must be 128",
    "contiguity": "q must be contiguous",
    "weight_shape": "weight must have shape",
    "cos_shape": "cos must have shape",
    "cos_dtype": "cos must have dtype torch.bfloat16",
    "out_shape": "out shape must match q shape",
    "empty": "q must be non-empty",
}


@pytest.mark.parametrize("kind", sorted(DECODE_BAD))
def test_q_norm_rope_bad_inputs(kernel, device, kind):
    kw = _decode_bad(kind)(device)
    before = _bits(kw["out"])
    with pytest.raises(RuntimeError, match=DECODE_BAD[kind]):
        kernel.q_norm_rope_bf16(kw["q"], kw["weight"], kw["cos"], kw["sin"], kw["out"])
    assert torch.equal(_bits(kw["out"]), before)


@pytest.mark.parametrize("kind,message", [
    ("v_shape", "v shape must match k shape"),
    ("v_out_shape", "k_out and v_out shapes must match k and v"),
    ("v_dtype", "v must have dtype torch.bfloat16"),
])
def test_k_norm_rope_bad_inputs(kernel, device, kind, message):
    kw = cases.decode_inputs((4, 128), device, _gen(), with_v=True)
    k_out, v_out = _poisoned_like(kw["k"]), _poisoned_like(kw["v"])
    if kind == "v_shape":
        kw["v"] = kw["v"][:3]
    elif kind == "v_out_shape":
        v_out = v_out[:3]
    elif kind == "v_dtype":
        kw["v"] = kw["v"].half()
    before = (_bits(k_out), _bits(v_out))
    with pytest.raises(RuntimeError, match=message):
        kernel.k_norm_rope_v_cache_bf16(**kw, k_out=k_out, v_out=v_out)
    assert torch.equal(_bits(k_out), before[0]) and torch.equal(_bits(v_out), before[1])


QKV_BAD = {
    "rank": ({"packed_qkv": lambda t: t[0]}, {}, "packed_qkv must have 3 dimensions"),
    "width": ({"packed_qkv": lambda t: t[..., :-2].contiguous()}, {},
              "packed_qkv last dimension must be 3 \\* heads \\* head_dim"),
    "odd_head_dim": ({}, {"heads": 4, "head_dim": 3}, "head_dim must be even"),
    "heads_zero": ({}, {"heads": 0}, "heads must be in"),
    "freqs_dtype": ({"freqs_re": lambda t: t.to(torch.bfloat16)}, {},
                    "freqs_re must have dtype torch.float32"),
    "freqs_width": ({"freqs_re": lambda t: t[:, :4].contiguous(),
                     "freqs_im": lambda t: t[:, :4].contiguous()}, {}, "freqs_re must have shape"),
    "freqs_im_shape": ({"freqs_im": lambda t: t[:-1].contiguous()}, {},
                       "freqs_im shape must match freqs_re shape"),
    "seq_len_table": ({}, {"seq_len": 13}, "seq_len must be <= freqs_re.size\\(0\\)"),
    "seq_len_negative": ({}, {"seq_len": -1}, "seq_len must be in"),
    "weight_shape": ({"norm_k_weight": lambda t: t[:-1].contiguous()}, {},
                     "norm_k_weight must have shape"),
    "packed_dtype": ({"packed_qkv": lambda t: t.half()}, {},
                     "packed_qkv must have dtype torch.bfloat16"),
}


@pytest.mark.parametrize("kind", sorted(QKV_BAD))
def test_qkv_bad_inputs(kernel, device, kind):
    B, L, H, hd = 1, 6, 2, 12
    edits, overrides, message = QKV_BAD[kind]
    kw = cases.qkv_inputs(B, L, H, hd, device, _gen(), table_rows=12)
    for name, edit in edits.items():
        kw[name] = edit(kw[name])
    q_out = torch.full((B, L, H, hd), float("nan"), dtype=torch.bfloat16, device=device)
    k_out = _poisoned_like(q_out)
    before = (_bits(q_out), _bits(k_out))
    args = {"heads": H, "head_dim": hd, **overrides}
    with pytest.raises(RuntimeError, match=message):
        kernel.qkv_split_norm_rope_bf16(**kw, **args, q_out=q_out, k_out=k_out)
    assert torch.equal(_bits(q_out), before[0]) and torch.equal(_bits(k_out), before[1])


def test_qkv_out_shape_mismatch(kernel, device):
    kw = cases.qkv_inputs(1, 6, 2, 8, device, _gen())
    bad = torch.empty(1, 6, 2, 4, dtype=torch.bfloat16, device=device)
    with pytest.raises(RuntimeError, match="q_out must have shape"):
        kernel.qkv_split_norm_rope_bf16(**kw, heads=2, head_dim=8, q_out=bad)


@pytest.mark.gpu
def test_cpu_tensor_rejected_on_gpu(kernel):
    kw = cases.decode_inputs((2, 128), torch.device("cuda"), _gen())
    kw["q"] = kw["q"].cpu()
    with pytest.raises(RuntimeError, match="q must be a CUDA tensor"):
        kernel.q_norm_rope_bf16(**kw)


# --- torch.library contracts, torch.compile, CUDA graphs -----------------------------------------


def _ops(kernel):
    return importlib.import_module(f"{kernel.__name__}._ops").ops


def test_opcheck(kernel, device):
    ops = _ops(kernel)
    d = cases.decode_inputs((3, 128), device, _gen(), with_v=True)
    torch.library.opcheck(ops.q_norm_rope_bf16,
                          (d["k"], d["weight"], d["cos"], d["sin"], torch.empty_like(d["k"]), 1e-6))
    torch.library.opcheck(ops.k_norm_rope_v_cache_bf16,
                          (d["k"], d["v"], d["weight"], d["cos"], d["sin"],
                           torch.empty_like(d["k"]), torch.empty_like(d["v"]), 1e-6))
    q = cases.qkv_inputs(1, 5, 2, 8, device, _gen())
    outs = [torch.empty(1, 5, 2, 8, dtype=torch.bfloat16, device=device) for _ in range(2)]
    torch.library.opcheck(ops.qkv_split_norm_rope_bf16,
                          (q["packed_qkv"], q["norm_q_weight"], q["norm_k_weight"], q["freqs_re"],
                           q["freqs_im"], *outs, 2, 8, 5, 1e-6))


def test_compile_fullgraph_no_recompile_across_token_counts(kernel, device):
    """One dynamic graph serves every token count; compiled == eager bit for bit."""
    backend = "inductor" if device.type == "cuda" else "aot_eager"
    H, hd = 2, 16

    def fn(packed, wq, wk, fr, fi, q, rows_weight, cos, sin):
        qo, ko = kernel.qkv_split_norm_rope_bf16(packed, wq, wk, fr, fi, heads=H, head_dim=hd)
        d = kernel.q_norm_rope_bf16(q, rows_weight, cos, sin)
        return qo, ko, d

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend=backend)

    def inputs(tokens):
        kw = cases.qkv_inputs(1, tokens, H, hd, device, _gen(), table_rows=64)
        d = cases.decode_inputs((tokens, 128), device, _gen())
        return (kw["packed_qkv"], kw["norm_q_weight"], kw["norm_k_weight"], kw["freqs_re"],
                kw["freqs_im"], d["q"], d["weight"], d["cos"], d["sin"])

    compiled(*inputs(7))  # first call compiles
    with torch._dynamo.config.patch(error_on_recompile=True):
        for tokens in (5, 19, 33):
            args = inputs(tokens)
            for got, want in zip(compiled(*args), fn(*args)):
                assert torch.equal(_bits(got), _bits(want))


@pytest.mark.gpu
def test_cuda_graph_replay_matches_eager(kernel):
    device = torch.device("cuda")
    H, hd, L = 24, 128, 37
    kw = cases.qkv_inputs(1, L, H, hd, device, _gen())
    d = cases.decode_inputs((L, H, 128), device, _gen(), with_v=True)
    q_out = torch.empty(1, L, H, hd, dtype=torch.bfloat16, device=device)
    k_out, dk, dv = torch.empty_like(q_out), torch.empty_like(d["k"]), torch.empty_like(d["v"])
    dq = torch.empty_like(d["k"])

    def step():
        kernel.qkv_split_norm_rope_bf16(**kw, heads=H, head_dim=hd, q_out=q_out, k_out=k_out)
        kernel.q_norm_rope_bf16(d["k"], d["weight"], d["cos"], d["sin"], dq)
        kernel.k_norm_rope_v_cache_bf16(**d, k_out=dk, v_out=dv)

    step()  # warm up (Triton JIT) outside capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    fresh = cases.qkv_inputs(1, L, H, hd, device, torch.Generator().manual_seed(7))
    fresh_d = cases.decode_inputs((L, H, 128), device, torch.Generator().manual_seed(7),
                                  with_v=True)
    for name in kw:  # new data into the captured input buffers
        kw[name].copy_(fresh[name])
    for name in d:
        d[name].copy_(fresh_d[name])
    graph.replay()
    torch.cuda.synchronize()
    ref = reference_of(kernel)
    want_q, want_k = ref.qkv_split_norm_rope_bf16(**kw, heads=H, head_dim=hd)
    want_dk, want_dv = ref.k_norm_rope_v_cache_bf16(**d)
    assert compare("bf16", q_out, want_q).ok and compare("bf16", k_out, want_k).ok
    assert compare("bf16", dk, want_dk).ok and compare("exact", dv, want_dv).ok
    assert compare("bf16", dq, ref.q_norm_rope_bf16(d["k"], d["weight"], d["cos"], d["sin"])).ok


@pytest.mark.gpu
@pytest.mark.parametrize("tokens", [1, 255, 1024, 2520, 4096])
@pytest.mark.parametrize("heads", [24, 40])
def test_wan_shapes_gpu(kernel, tokens, heads):
    device = torch.device("cuda")
    kw = cases.qkv_inputs(1, tokens, heads, 128, device, _gen())
    got = kernel.qkv_split_norm_rope_bf16(**kw, heads=heads, head_dim=128)
    want = reference_of(kernel).qkv_split_norm_rope_bf16(**kw, heads=heads, head_dim=128)
    for g, w in zip(as_tuple(got), want):
        v = compare("bf16", g, w)
        assert v.ok, v.message


def test_direct_launch_equals_op(kernel, device):
    """Eager wrappers launch directly (host time); the registered op gives the same bits."""
    ops = _ops(kernel)
    kw = cases.qkv_inputs(2, 5, 3, 8, device, _gen(), table_rows=8)
    q1, k1 = kernel.qkv_split_norm_rope_bf16(**kw, heads=3, head_dim=8)
    q2, k2 = torch.empty_like(q1), torch.empty_like(k1)
    ops.qkv_split_norm_rope_bf16(kw["packed_qkv"], kw["norm_q_weight"], kw["norm_k_weight"],
                                 kw["freqs_re"], kw["freqs_im"], q2, k2, 3, 8, 5, 1e-6)
    assert torch.equal(_bits(q1), _bits(q2)) and torch.equal(_bits(k1), _bits(k2))
    d = cases.decode_inputs((3, 128), device, _gen(), with_v=True)
    k_a, v_a = kernel.k_norm_rope_v_cache_bf16(**d)
    k_b, v_b = torch.empty_like(k_a), torch.empty_like(v_a)
    ops.k_norm_rope_v_cache_bf16(d["k"], d["v"], d["weight"], d["cos"], d["sin"], k_b, v_b, 1e-6)
    assert torch.equal(_bits(k_a), _bits(k_b)) and torch.equal(_bits(v_a), _bits(v_b))


def test_ops_pass_eps_and_seq_len_through(kernel, device):
    """Catches an op (the compiled path) that drops eps or seq_len: small inputs, eps = 1e-4."""
    ops, ref = _ops(kernel), reference_of(kernel)
    d = cases.decode_inputs((3, 128), device, _gen(), with_v=True)
    d["k"] = d["k"] * 1e-3
    q = torch.empty_like(d["k"])
    ops.q_norm_rope_bf16(d["k"], d["weight"], d["cos"], d["sin"], q, 1e-4)
    assert compare("bf16", q, ref.q_norm_rope_bf16(d["k"], d["weight"], d["cos"], d["sin"],
                                                   eps=1e-4)).ok
    k_out, v_out = torch.empty_like(d["k"]), torch.empty_like(d["v"])
    ops.k_norm_rope_v_cache_bf16(d["k"], d["v"], d["weight"], d["cos"], d["sin"], k_out, v_out,
                                 1e-4)
    want_k, want_v = ref.k_norm_rope_v_cache_bf16(**d, eps=1e-4)
    assert compare("bf16", k_out, want_k).ok and compare("exact", v_out, want_v).ok
    B, L, H, hd = 2, 6, 2, 8
    kw = cases.qkv_inputs(B, L, H, hd, device, _gen(), table_rows=8)
    kw["packed_qkv"] = kw["packed_qkv"] * 1e-3
    outs = [torch.empty(B, L, H, hd, dtype=torch.bfloat16, device=device) for _ in range(2)]
    ops.qkv_split_norm_rope_bf16(kw["packed_qkv"], kw["norm_q_weight"], kw["norm_k_weight"],
                                 kw["freqs_re"], kw["freqs_im"], *outs, H, hd, 3, 1e-4)
    want = ref.qkv_split_norm_rope_bf16(**kw, heads=H, head_dim=hd, seq_len=3, eps=1e-4)
    for g, w in zip(outs, want):
        v = compare("bf16", g, w)
        assert v.ok, v.message
