"""Tests of flashrt-smallm-gemm, loaded through `kernels` from a fresh build.

GEMMs against a reference dequantizing the exact packed tensors (gemm
comparator, see cases.py) plus the spec's constant test (exact) and max-ULP
gate; quantizer byte-exact and round trip; bad inputs (nothing written);
opcheck, compile, CUDA graph.
"""

import importlib

import pytest
import torch

from flashrt_tools.repo import ROOT, load_file
from flashrt_tools.tolerance import compare
from flashrt_tools.validation import reference_of, run_case

cases = load_file(ROOT / "flashrt-smallm-gemm" / "tests" / "cases.py",
                  "_flashrt_cases_flashrt_smallm_gemm")

GEN_SEED = 1234


def _gen():
    return torch.Generator().manual_seed(GEN_SEED)


def _bits(t):
    return t.view(torch.int16).clone()


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_matches_reference(kernel, device, case):
    verdicts, _ = run_case(kernel, reference_of(kernel), case, device, seed=GEN_SEED)
    for v in verdicts:
        assert v.ok, f"{case.id}: {v.message}"


@pytest.mark.parametrize("K,want", [(4096, 512.0), (12288, 1536.0)])
def test_matvec_constant(kernel, device, K, want):
    """Spec §4.4: bytes 0x11 (two 0.5s), scales 0x38 (1.0), alpha 0.5 -> K * 0.25 * 0.5."""
    a = torch.full((K // 2,), 0x11, dtype=torch.uint8, device=device)
    b = torch.full((16, K // 2), 0x11, dtype=torch.uint8, device=device)
    sf = torch.full((K // 16 * 128 // 4 * 4,), 0x38, dtype=torch.uint8, device=device)
    out = kernel.nvfp4_w4a4_decode_matvec_bf16out(a, b, sf, sf, alpha=0.5)
    assert out.shape == (16,) and bool((out.float() == want).all())


@pytest.mark.parametrize("M,N,K", [(1, 64, 1024), (4, 48, 512), (64, 16, 256)])
def test_matvec_max_ulp(kernel, device, M, N, K):
    """Spec gate: max bf16 ULP <= 5, outside fp32-cancellation (atol = fp32 sum bound)."""
    args, kw = cases.matvec_inputs(M, N, K, device, _gen())
    got = kernel.nvfp4_w4a4_decode_matvec_bf16out(*args, **kw)
    ref = reference_of(kernel)
    want = ref.nvfp4_w4a4_decode_matvec_bf16out(*args, **kw)
    a = ref.dequantize(args[0], args[2], M, K).double()
    b = ref.dequantize(args[1], args[3], N, K).double()
    bound = float(((a.abs() @ b.abs().t()) * kw["alpha"]).max()) * (K // 16) * 2.0 ** -24
    v = compare("bf16", got, want, ulps=5, atol=bound)
    assert v.ok, v.message


def test_matvec_scale_sign_and_nan(kernel, device):
    """smallm decode: scale sign honoured; 0x7F / 0xFF scale -> 0."""
    K = 64
    a = torch.full((K // 2,), 0x22, dtype=torch.uint8, device=device)  # 1.0s
    b = torch.full((4, K // 2), 0x22, dtype=torch.uint8, device=device)
    sfa = torch.full((512,), 0x38, dtype=torch.uint8, device=device)
    lin = torch.tensor([[0x38] * 4, [0xB8] * 4, [0x7F] * 4, [0xFF, 0x38, 0x38, 0x38]],
                       dtype=torch.uint8)
    sfb = cases.swizzle(lin).to(device)
    out = kernel.nvfp4_w4a4_decode_matvec_bf16out(a, b, sfa, sfb)
    assert out.float().tolist() == [64.0, -64.0, 0.0, 48.0]


def test_matvec_out_shapes(kernel, device):
    args, kw = cases.matvec_inputs(1, 24, 128, device, _gen())
    out2 = torch.full((1, 24), float("nan"), dtype=torch.bfloat16, device=device)
    got = kernel.nvfp4_w4a4_decode_matvec_bf16out(*args, **kw, out=out2)
    assert got is out2
    one = kernel.nvfp4_w4a4_decode_matvec_bf16out(*args, **kw)
    assert one.shape == (24,) and torch.equal(_bits(one), _bits(out2[0]))
    args, kw = cases.matvec_inputs(3, 24, 128, device, _gen())
    assert kernel.nvfp4_w4a4_decode_matvec_bf16out(*args, **kw).shape == (3, 24)


def test_linear_out_buffer_and_alpha(kernel, device):
    (x, w, s), kw = cases.linear_inputs(7, 40, 256, device, _gen())
    out = torch.full((7, 40), float("nan"), dtype=torch.bfloat16, device=device)
    got = kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw, out=out)
    assert got is out
    want = reference_of(kernel).nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    assert compare("gemm", out, want, **cases.gemm_tolerance(256, 0.5, 1.0)["gemm"]).ok


def test_quantize_round_trip_and_linear(kernel, device):
    """Quantized weight -> linear equals F.linear with the dequantized weight; the
    dequantized weight is within one E2M1 step x scale of the original."""
    (w,), kw = cases.weight_inputs(48, 256, device, _gen())
    packed, scales = kernel.nvfp4_quantize_weight_bf16(w, **kw)
    ref = reference_of(kernel)
    deq = ref.dequantize(packed, scales, 48, 256) / kw["global_scale"]
    err = (deq - w.float()).abs().view(48, 16, 16)
    blk = w.float().abs().view(48, 16, 16).amax(2, keepdim=True)
    assert bool((err <= blk / 6 * 1.125 * 2 / 2 + 1e-6).all())  # half of the widest step (2)
    x = torch.randn(5, 256, generator=_gen()).to(torch.bfloat16).to(device)
    y = kernel.nvfp4_weight_only_linear_bf16(x, packed, scales, alpha=1.0 / kw["global_scale"])
    want = (x.double() @ deq.double().t()).to(torch.bfloat16)
    assert compare("gemm", y, want, p99_abs=float(want.float().abs().mean()) * 2.0 ** -7).ok


@pytest.mark.parametrize("rows", [1, 31, 32, 33, 127, 128, 129])
def test_quantize_padding_untouched(kernel, device, rows):
    (w,), kw = cases.weight_inputs(rows, 80, device, _gen())
    n = -(-rows // 128) * 2 * 512
    packed = torch.full((rows, 40), 0x5A, dtype=torch.uint8, device=device)
    scales = torch.full((n,), 0xA5, dtype=torch.uint8, device=device)
    got = kernel.nvfp4_quantize_weight_bf16(w, **kw, packed=packed, scales=scales)
    assert got[0] is packed and got[1] is scales
    ref = reference_of(kernel)
    want_p, want_s = ref.nvfp4_quantize_weight_bf16(w, **kw)
    assert torch.equal(packed, want_p)
    written = torch.zeros(n, dtype=torch.bool, device=device)
    written[ref.swizzled_offsets(rows, 5, device).flatten()] = True
    assert torch.equal(scales[written], want_s[written]) and bool((scales[~written] == 0xA5).all())


MATVEC_BAD = {
    "b_rank": (ValueError, "b_packed must be a 2-D tensor"),
    "dtype": (RuntimeError, "a_packed must have dtype torch.uint8"),
    "a_bytes": (RuntimeError, "a_packed must contain K / 2"),
    "K": (RuntimeError, "K must be positive and a multiple of 16"),
    "M": (RuntimeError, "a_packed must have 1 to 64 rows"),
    "sfa": (RuntimeError, "sfa must contain at least"),
    "sfb": (RuntimeError, "sfb must contain at least"),
    "out_shape": (RuntimeError, "out must have shape"),
    "out_dtype": (RuntimeError, "out must have dtype torch.bfloat16"),
    "contiguity": (RuntimeError, "b_packed must be contiguous"),
    "K_zero": (RuntimeError, "K must be positive and a multiple of 16"),
    "M_zero": (RuntimeError, "a_packed must have 1 to 64 rows"),
    "sfa_contiguity": (RuntimeError, "sfa must be contiguous"),
}


@pytest.mark.parametrize("kind", sorted(MATVEC_BAD))
def test_matvec_bad_inputs(kernel, device, kind):
    (a, b, sfa, sfb), kw = cases.matvec_inputs(2, 16, 128, device, _gen())
    out = torch.full((2, 16), float("nan"), dtype=torch.bfloat16, device=device)
    o = out
    if kind == "b_rank":
        b = b.flatten()
    elif kind == "dtype":
        a = a.view(torch.int8)
    elif kind == "a_bytes":
        a = a[:, :32].contiguous()
    elif kind == "K":
        a, b = a[:, :36].contiguous(), b[:, :36].contiguous()
    elif kind == "M":
        a = torch.zeros(65, 64, dtype=torch.uint8, device=device)
    elif kind == "sfa":
        sfa = sfa[:100]
    elif kind == "sfb":
        sfb = sfb[:100]
    elif kind == "out_shape":
        o = out[0]
    elif kind == "out_dtype":
        o = out.float()
    elif kind == "contiguity":
        b = torch.zeros(64, 16, dtype=torch.uint8, device=device).t()
    elif kind == "K_zero":
        a, b = a[:, :0], b[:, :0]
    elif kind == "M_zero":
        a = a[:0]
    elif kind == "sfa_contiguity":
        sfa = torch.stack([sfa, sfa], dim=1)[:, 0]
    err, message = MATVEC_BAD[kind]
    before = _bits(out)
    with pytest.raises(err, match=message):
        kernel.nvfp4_w4a4_decode_matvec_bf16out(a, b, sfa, sfb, **kw, out=o)
    assert torch.equal(_bits(out), before)


LINEAR_BAD = {
    "x_dtype": "x must have dtype torch.bfloat16", "x_K": "x last dimension must be K",
    "w_rank": "w_packed must be 2-D", "scales": "w_scales must contain at least",
    "bias": "bias must have shape", "out_shape": "out must have shape",
    "empty": "x must be non-empty",
    "x_contiguity": "x must be contiguous", "out_contiguity": "out must be contiguous",
    "scales_contiguity": "w_scales must be contiguous",
    "bias_dtype": "bias must have dtype torch.bfloat16", "x_align": "x must be 4-byte aligned",
}


@pytest.mark.parametrize("kind", sorted(LINEAR_BAD))
def test_linear_bad_inputs(kernel, device, kind):
    (x, w, s), kw = cases.linear_inputs(3, 16, 128, device, _gen())
    out = torch.full((3, 16), float("nan"), dtype=torch.bfloat16, device=device)
    o = out
    if kind == "x_dtype":
        x = x.half()
    elif kind == "x_K":
        x = x[:, :96].contiguous()
    elif kind == "w_rank":
        w = w.flatten()
    elif kind == "scales":
        s = s[:10]
    elif kind == "bias":
        kw["bias"] = kw["bias"][:5]
    elif kind == "out_shape":
        o = out[:2]
    elif kind == "empty":
        x = x[:0]
    elif kind == "x_contiguity":  # rows of a wider tensor: unit stride, row stride 2K
        x = torch.cat([x, x], dim=1)[:, :128]
    elif kind == "out_contiguity":
        o = torch.full((16, 3), float("nan"), dtype=torch.bfloat16, device=device).t()
        out = o
    elif kind == "scales_contiguity":
        s = torch.stack([s, s], dim=1)[:, 0]
    elif kind == "bias_dtype":
        kw["bias"] = kw["bias"].float()
    elif kind == "x_align":  # odd bf16 storage offset: not readable as element pairs
        x = torch.empty(x.numel() + 1, dtype=torch.bfloat16, device=device)[1:].view(3, 128)
        x.copy_(torch.randn(3, 128, generator=_gen()).to(x))
    before = _bits(out)
    with pytest.raises(RuntimeError, match=LINEAR_BAD[kind]):
        kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw, out=o)
    assert torch.equal(_bits(out), before)


@pytest.mark.parametrize("kind,err,message", [
    ("rank", ValueError, "weight must be a 2-D tensor"), ("K", RuntimeError, "divisible by 16"),
    ("dtype", RuntimeError, "weight must have dtype torch.bfloat16"),
    ("packed", RuntimeError, "packed must have shape"),
    ("scales", RuntimeError, "scales must contain at least")])
def test_quantize_bad_inputs(kernel, device, kind, err, message):
    (w,), kw = cases.weight_inputs(8, 64, device, _gen())
    packed = torch.full((8, 32), 0x5A, dtype=torch.uint8, device=device)
    scales = torch.full((512,), 0xA5, dtype=torch.uint8, device=device)
    p, s = packed, scales
    if kind == "rank":
        w = w[0]
    elif kind == "K":
        w = w[:, :40].contiguous()
    elif kind == "dtype":
        w = w.float()
    elif kind == "packed":
        p = torch.full((8, 16), 0x5A, dtype=torch.uint8, device=device)
    elif kind == "scales":
        s = scales[:100]
    with pytest.raises(err, match=message):
        kernel.nvfp4_quantize_weight_bf16(w, **kw, packed=p, scales=s)
    assert bool((packed == 0x5A).all()) and bool((scales == 0xA5).all())


def _ops(kernel):
    return importlib.import_module(f"{kernel.__name__}._ops").ops


def test_opcheck(kernel, device):
    ops = _ops(kernel)
    (a, b, sfa, sfb), _ = cases.matvec_inputs(3, 20, 128, device, _gen())
    torch.library.opcheck(ops.nvfp4_w4a4_decode_matvec_bf16out,
                          (a, b, sfa, sfb, torch.empty(3, 20, dtype=torch.bfloat16, device=device),
                           0.5))
    (x, w, s), kw = cases.linear_inputs(5, 20, 128, device, _gen())
    torch.library.opcheck(ops.nvfp4_weight_only_linear_bf16,
                          (x, w, s, kw["bias"], torch.empty(5, 20, dtype=torch.bfloat16,
                                                            device=device), 0.5))
    (wt,), qkw = cases.weight_inputs(20, 64, device, _gen())
    torch.library.opcheck(ops.nvfp4_quantize_weight_bf16,
                          (wt, torch.empty(20, 32, dtype=torch.uint8, device=device),
                           torch.zeros(512, dtype=torch.uint8, device=device), qkw["global_scale"]))


def test_compile_fullgraph_no_recompile_across_row_counts(kernel, device):
    backend = "inductor" if device.type == "cuda" else "aot_eager"
    N, K = 24, 128

    def fn(x, w, s, bias, a, sfa, b, sfb):
        y = kernel.nvfp4_weight_only_linear_bf16(x, w, s, alpha=0.5, bias=bias)
        z = kernel.nvfp4_w4a4_decode_matvec_bf16out(a, b, sfa, sfb, alpha=0.25)
        return y, z

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend=backend)

    def inputs(rows):
        (x, w, s), kw = cases.linear_inputs(rows, N, K, device, _gen())
        (a, b, sfa, sfb), _ = cases.matvec_inputs(rows, N, K, device, _gen())
        return x, w, s, kw["bias"], a, sfa, b, sfb

    compiled(*inputs(7))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for rows in (5, 19, 33):
            args = inputs(rows)
            for got, want in zip(compiled(*args), fn(*args)):
                assert torch.equal(_bits(got), _bits(want))


@pytest.mark.gpu
def test_cuda_graph_replay_matches_eager(kernel):
    device = torch.device("cuda")
    (x, w, s), kw = cases.linear_inputs(4, 1024, 4096, device, _gen())  # split-K path
    (a, b, sfa, sfb), mkw = cases.matvec_inputs(1, 4096, 4096, device, _gen(), one_d=True)
    (wt,), qkw = cases.weight_inputs(256, 4096, device, _gen())
    y = torch.empty(4, 1024, dtype=torch.bfloat16, device=device)
    z = torch.empty(4096, dtype=torch.bfloat16, device=device)
    p = torch.empty(256, 2048, dtype=torch.uint8, device=device)
    sc = torch.zeros(256 * 4096 // 16, dtype=torch.uint8, device=device)

    def step():
        kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw, out=y)
        kernel.nvfp4_w4a4_decode_matvec_bf16out(a, b, sfa, sfb, **mkw, out=z)
        kernel.nvfp4_quantize_weight_bf16(wt, **qkw, packed=p, scales=sc)

    step()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    x.copy_(torch.randn(4, 4096, generator=torch.Generator().manual_seed(7)).to(x))
    wt.copy_((torch.randn(256, 4096, generator=torch.Generator().manual_seed(8)) * 0.02).to(wt))
    graph.replay()
    torch.cuda.synchronize()
    ref = reference_of(kernel)
    tol = cases.gemm_tolerance(4096, 0.5, 1.0)["gemm"]
    assert compare("gemm", y, ref.nvfp4_weight_only_linear_bf16(x, w, s, **kw), **tol).ok
    assert compare("gemm", z, ref.nvfp4_w4a4_decode_matvec_bf16out(a, b, sfa, sfb, **mkw),
                   **cases.gemm_tolerance(4096, 0.25, 8.5625 * 1.4)["gemm"]).ok
    wp, ws = ref.nvfp4_quantize_weight_bf16(wt, **qkw)
    assert torch.equal(p, wp) and torch.equal(sc, ws)


def test_direct_launch_equals_op(kernel, device):
    (x, w, s), kw = cases.linear_inputs(6, 30, 256, device, _gen())
    y1 = kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    y2 = torch.empty_like(y1)
    _ops(kernel).nvfp4_weight_only_linear_bf16(x, w, s, kw["bias"], y2, kw["alpha"])
    assert torch.equal(_bits(y1), _bits(y2))


def _smallm(kernel):
    return importlib.import_module(f"{kernel.__name__}.smallm")


def _all_codes_weight(rows, device):
    """K = 16 (one scale byte per weight row) and 256 x 16 / rows weight rows: row r has
    scale byte r // (16 / rows) (sign, subnormal and NaN codes included) and the E2M1
    codes 0..15 rotated by rows x (r % (16 / rows)), so elements 0..rows-1 meet every
    (code, scale) pair."""
    turns = 16 // rows
    r = torch.arange(256 * turns)[:, None]
    codes = ((torch.arange(16)[None, :] + rows * (r % turns)) % 16).to(torch.uint8)
    w = codes[:, 0::2] | (codes[:, 1::2] << 4)  # element 2j low nibble, 2j+1 high
    return w.to(device), cases.swizzle((r // turns).to(torch.uint8)).to(device)


def _mma(kernel, device):
    """The Gluon kernel's module, or a skip where it does not run."""
    nm = importlib.import_module(f"{kernel.__name__}.nvfp4_mma")
    if not nm.available(torch.device(device)):
        pytest.skip("the Gluon mma.sync kernel runs on sm_90 GPUs with the verified Triton "
                    "only (elsewhere the rule takes the tl.dot kernel, tested here too)")
    return nm


@pytest.mark.parametrize("path", ["gemv", "dot", "mma"])
def test_every_code_and_scale_exact(kernel, device, path):
    """One-hot activations read the dequantized weight back exactly (bf16 holds every
    E2M1 x UE4M3 product): subnormal codes and scales survive the bit decode, in each
    kernel (the tl.dot and mma ones launched directly where the rule takes the other)."""
    sm = _smallm(kernel)
    dev = torch.device(device)
    rows = sm.GEMV_MAX_ROWS if path == "gemv" else 16
    w, s = _all_codes_weight(rows, device)
    N = w.shape[0]
    cfg = {"gemv": lambda: sm.gemm_config(rows, N, 8, dev),
           "dot": lambda: sm.dot_config(rows, N, 1, dev),
           "mma": lambda: _mma(kernel, device).mma_config(rows, N, 8, dev)}[path]()
    assert cfg[0] == path
    ref = reference_of(kernel)
    deq = ref.dequantize(w, s, N, 16).t()[:rows]  # each value exact in bf16
    x = torch.eye(16, dtype=torch.bfloat16, device=device)[:rows]
    a = torch.where(x.bool(), 2, 0).to(torch.uint8)  # E2M1 code 2 = 1.0
    a = (a[:, 0::2] | (a[:, 1::2] << 4)).contiguous()
    sa = torch.full((512,), 0x38, dtype=torch.uint8, device=device)
    y = torch.empty(rows, N, dtype=torch.bfloat16, device=device)
    sm._launch_gemm(x, None, w, s, None, y, rows, 1.0, False, cfg)
    z = kernel.nvfp4_w4a4_decode_matvec_bf16out(a, w, sa, s).reshape(rows, N)
    assert torch.equal(y.float(), deq)  # -0.0 weights sum to +0.0
    assert torch.equal(_bits(y), _bits(ref.nvfp4_weight_only_linear_bf16(x, w, s)))
    assert torch.equal(_bits(z), _bits(y))
    assert torch.equal(_bits(kernel.nvfp4_weight_only_linear_bf16(x, w, s)), _bits(y))


def test_dispatch_boundary_rows(kernel, device):
    """The last GEMV row count, the first and last of the mma kernel (where it runs) and
    the first tl.dot one, for both products; all match."""
    sm = _smallm(kernel)
    N, K = 72, 1040  # ragged: 72 = 2 x 32 + 8 rows, 65 blocks of 16
    ref = reference_of(kernel)
    dev = torch.device(device)
    after_gemv = "mma" if sm.uses_mma(sm.GEMV_MAX_ROWS + 1, dev) else "dot"
    after_mma = sm.MMA_MAX_ROWS + 1
    for M, kind in ((sm.GEMV_MAX_ROWS, "gemv"), (sm.GEMV_MAX_ROWS + 1, after_gemv),
                    (sm.MMA_MAX_ROWS, after_gemv), (after_mma, "dot")):
        assert sm.gemm_config(M, N, K // 2, dev)[0] == kind
        (x, w, s), kw = cases.linear_inputs(M, N, K, device, _gen())
        got = kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw)
        want = ref.nvfp4_weight_only_linear_bf16(x, w, s, **kw)
        assert compare("gemm", got, want, **cases.gemm_tolerance(K, 0.5, 1.0)["gemm"]).ok
    tol = cases.gemm_tolerance(K, 0.25, cases.E2M1_MEAN_SQ * cases.SCALE_MEAN_SQ)["gemm"]
    after_gemv = "mma" if sm.uses_mma(sm.W4A4_GEMV_MAX_ROWS + 1, dev, a_fp4=True) else "dot"
    for M, kind in ((sm.W4A4_GEMV_MAX_ROWS, "gemv"), (sm.W4A4_GEMV_MAX_ROWS + 1, after_gemv),
                    (after_mma, "dot")):
        assert sm.gemm_config(M, N, K // 2, dev, a_fp4=True)[0] == kind
        args, mkw = cases.matvec_inputs(M, N, K, device, _gen())
        got = kernel.nvfp4_w4a4_decode_matvec_bf16out(*args, **mkw)
        want = ref.nvfp4_w4a4_decode_matvec_bf16out(*args, **mkw)
        assert compare("gemm", got, want, **tol).ok


def test_dot_split_rule(kernel, device):
    """Up to 32 rows: the most K splits with <= 4 programs per SM and >= 2 K steps per
    split (64-byte steps); beyond: ~2 programs per SM (128-byte steps)."""
    sm = _smallm(kernel)
    dev = torch.device(device)
    sms = sm.sm_count(dev)
    for M, K, N in ((4, 16384, 2048), (16, 2048, 16384), (16, 4096, 1024), (20, 1040, 40),
                    (4, 64, 8192), (64, 4096, 4096)):
        cfg = sm.dot_config(M, N, K // 16, dev)
        _, bm, bn, bk, n_split, per_split = cfg[:6]
        steps = -(-(K // 16) // (bk // 8))
        tiles = -(-N // bn) * -(-M // bm)
        assert n_split == -(-steps // per_split), cfg
        if M <= 32:
            assert bk == 64 or K // 16 < 8, cfg
            assert n_split == 1 or (tiles * n_split <= 4 * sms and per_split >= 2), cfg
            # no larger split fits both bounds
            assert tiles * (n_split + 1) > 4 * sms or steps // (n_split + 1) < 2 or \
                -(-steps // -(-steps // (n_split + 1))) == n_split, cfg
        else:
            assert bk == 128, cfg


@pytest.mark.parametrize("M", [1, 20])  # GEMV and tl.dot split-K
def test_split_k_deterministic_and_counters_reset(kernel, device, M, monkeypatch):
    """Ragged N and K split over several programs per tile: two calls agree bit for bit,
    match the reference, and leave every arrival counter at zero."""
    sm = _smallm(kernel)
    N, K = 40, 1040
    cfg = sm.gemm_config(M, N, K // 2, torch.device(device))
    assert cfg[4] > 1, cfg  # n_split
    counters = torch.zeros(64, dtype=torch.int32, device=device)
    monkeypatch.setattr(sm._COUNTERS, "get", lambda dev, count: counters)
    (x, w, s), kw = cases.linear_inputs(M, N, K, device, _gen())
    y1 = kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    assert bool((counters == 0).all())
    y2 = kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    assert torch.equal(_bits(y1), _bits(y2)) and bool((counters == 0).all())
    want = reference_of(kernel).nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    assert compare("gemm", y1, want, **cases.gemm_tolerance(K, 0.5, 1.0)["gemm"]).ok


def test_unaligned_weight_words_fall_back_to_dot(kernel, device):
    """A w_packed view that is not 8-byte aligned cannot be read as int64 block words:
    the tl.dot kernel (byte loads) serves it, same result."""
    (x, w, s), kw = cases.linear_inputs(2, 24, 256, device, _gen())
    buf = torch.empty(w.numel() + 4, dtype=torch.uint8, device=device)
    shifted = buf[4:].view(w.shape)
    shifted.copy_(w)
    assert shifted.data_ptr() % 8 != 0
    got = kernel.nvfp4_weight_only_linear_bf16(x, shifted, s, **kw)
    want = kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    assert compare("gemm", got, want, **cases.gemm_tolerance(256, 0.5, 1.0)["gemm"]).ok


@pytest.mark.parametrize("M,K", [(5, 1040), (16, 1024), (40, 1040)])
def test_odd_weight_address_takes_the_byte_decode_same_bits(kernel, device, M, K):
    """The tl.dot kernel's PTX decode reads packed bytes as int16 elements; a w_packed
    view at an odd address takes the byte-wise (fp32-form) decode instead. Both dequantize
    exactly and share the K order, so the outputs agree bit for bit (on the GPU this
    compares the PTX decode with the fp32 form)."""
    (x, w, s), kw = cases.linear_inputs(M, 72, K, device, _gen())
    buf = torch.empty(w.numel() + 1, dtype=torch.uint8, device=device)
    odd = buf[1:].view(w.shape)
    odd.copy_(w)
    assert odd.data_ptr() % 2 == 1
    # an odd address is not word-aligned: the rule takes the tl.dot kernel
    assert _smallm(kernel).gemm_config(M, 72, K // 2, torch.device(device),
                                       words_aligned=False)[0] == "dot"
    got = kernel.nvfp4_weight_only_linear_bf16(x, odd, s, **kw)
    want = kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    assert torch.equal(_bits(got), _bits(want))


def test_ptx_decode_operands_pair_neighbouring_elements(kernel):
    """The PTX decode's operands keep neighbouring int16 elements in neighbouring
    registers (its bf16x2 outputs are then the MMA operand's registers, no trip through
    shared memory). Compiled for sm_90 in a subprocess outside the interpreter (no GPU
    needed), one configuration per branch of the launch rule."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = ROOT / "flashrt-smallm-gemm" / "tests" / "ptx_operand_layout.py"
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    assert run.stdout.count("ok ") == 4, run.stdout


@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(1, 200, 1024), (4, 136, 2048), (16, 72, 1040),
                                   (40, 264, 512)])
def test_launch_options_keep_the_bits(kernel, M, N, K):
    """Programmatic dependent launch, L2 prefetch and the dependents' release point on or
    off, and the dot kernel's scales read as int32 words or as bytes: the same loads of
    the same values, so the same bits (GEMV at M = 1, the dot kernel's branches above, a
    ragged K tail at K = 1040)."""
    sm = _smallm(kernel)
    dev = torch.device("cuda")
    (x, w, s), kw = cases.linear_inputs(M, N, K, "cuda", _gen())
    cfg = sm.gemm_config(M, N, K // 2, dev)
    cfgs = [cfg] + ([cfg[:9] + (sc,) for sc in ("words", "bytes")] if cfg[0] == "dot" else [])
    outs = []
    options = [{"pdl": True, "prefetch": True}, {"pdl": False, "prefetch": False},
               {"pdl": False, "prefetch": True}, {"pdl": True, "early_release": False}]
    for c in cfgs:
        for opt in options:
            out = torch.empty(M, N, dtype=torch.bfloat16, device="cuda")
            sm._launch_gemm(x, None, w, s, kw["bias"], out, M, kw["alpha"], False, c, **opt)
            outs.append(_bits(out))
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    want = reference_of(kernel).nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    got = outs[0].view(torch.bfloat16)
    assert compare("gemm", got, want, **cases.gemm_tolerance(K, kw["alpha"], 1.0)["gemm"]).ok


@pytest.mark.gpu
@pytest.mark.parametrize("M", [1, 4, 16])
def test_weight_written_by_the_previous_kernel(kernel, M):
    """With programmatic dependent launch the GEMM starts while the previous kernel runs
    and prefetches its weight; every read comes after griddepcontrol.wait, so a weight
    (and scales) that kernel writes is still read correctly. (At 4096 x 1024 the launch
    rule takes the PDL launch for all three M: the GEMV's 256 programs are within
    PDL_MAX_PROGRAMS_PER_SM on a 132-SM H100 / H200, and nvfp4_mma.uses_pdl_rule holds
    for the mma kernel at M = 4 and 16.)"""
    N, K = 4096, 1024
    (x, w, s), kw = cases.linear_inputs(M, N, K, "cuda", _gen())
    (_, w2, s2), _ = cases.linear_inputs(M, N, K, "cuda", torch.Generator().manual_seed(7))
    w_buf, s_buf = torch.zeros_like(w), torch.zeros_like(s)
    want = reference_of(kernel).nvfp4_weight_only_linear_bf16(x, w2, s2, **kw)
    for src_w, src_s in ((w, s), (w2, s2)):  # the second call's weight changes just before
        w_buf.copy_(src_w)
        s_buf.copy_(src_s)
        got = kernel.nvfp4_weight_only_linear_bf16(x, w_buf, s_buf, **kw)
    assert compare("gemm", got, want, **cases.gemm_tolerance(K, kw["alpha"], 1.0)["gemm"]).ok


def test_mma_split_rule(kernel, device):
    """The mma kernel's launch rule (host arithmetic, checked everywhere): 8 or 16
    activation rows, K split evenly into >= min_steps steps per split, at most about
    ``waves`` programs per SM, one split where the row tiles fill the GPU; the tile from
    ``tile_rule``."""
    nm = importlib.import_module(f"{kernel.__name__}.nvfp4_mma")
    dev = torch.device(device)
    sms = _smallm(kernel).sm_count(dev)
    for M, K, N in ((2, 16384, 2048), (4, 2048, 16384), (4, 1024, 8192), (9, 4096, 1024),
                    (16, 1024, 8192), (16, 64, 72), (3, 1040, 40)):
        cfg = nm.mma_config(M, N, K // 2, dev)
        _, bm, bn, kc, n_split, per_split, warps, row_reps, depth = cfg
        assert (warps, row_reps, kc, depth) == tuple(nm.tile_rule(bm, N, K)[i]
                                                     for i in (0, 1, 2, 4)), cfg
        waves = nm.tile_rule(bm, N, K)[3]
        assert bm == (8 if M <= 8 else 16) and bn == 16 * warps * row_reps
        steps = -(-(K // 16) // (4 * kc))
        tiles = -(-N // bn)
        assert n_split == -(-steps // per_split) and (n_split - 1) * per_split < steps
        assert n_split == 1 or per_split >= 2
        assert n_split <= max(1, -(-waves * sms // tiles)), (M, K, N)


MMA_SHAPES = [(2, 200, 1024), (4, 136, 2048), (8, 1024, 1040), (9, 72, 4096),
              (16, 264, 512), (16, 4096, 1024), (5, 128, 16), (13, 40, 528)]
# (warps, row reps, 64-element chunks per K step, steps in flight) beside the rule's; and
# the split forced off (waves=0) or to one step per split
MMA_TILES = [(4, 2, 1, 1), (8, 1, 2, 2), (4, 4, 1, 2), (2, 2, 2, 1)]


@pytest.mark.gpu
@pytest.mark.parametrize("op", ["linear", "matvec"])
@pytest.mark.parametrize("M,N,K", MMA_SHAPES)
def test_mma_kernel_matches_reference(kernel, M, N, K, op, monkeypatch):
    """The Gluon kernel on ragged rows (N not a multiple of the tile), ragged K (K / 16
    blocks not a multiple of the step), 2 to 16 activation rows (8-row and 16-row MMA
    tiles), BF16 (with and without bias) and NVFP4 activations, with and without split-K,
    every tile shape it is swept over: each launch matches the reference, repeats its
    bits and leaves its counters at 0."""
    nm = _mma(kernel, "cuda")
    sm = _smallm(kernel)
    dev = torch.device("cuda")
    counters = torch.zeros(4096, dtype=torch.int32, device=dev)
    monkeypatch.setattr(sm._COUNTERS, "get", lambda d, count: counters)
    ref = reference_of(kernel)
    problems = []
    if op == "linear":
        for bias in (True, False):
            (x, w, s), kw = cases.linear_inputs(M, N, K, "cuda", _gen(), bias=bias)
            problems.append(((x, None, w, s, kw.get("bias"), kw["alpha"], False),
                             ref.nvfp4_weight_only_linear_bf16(x, w, s, **kw),
                             cases.gemm_tolerance(K, kw["alpha"], 1.0)["gemm"]))
    else:
        (a, w, sa, s), kw = cases.matvec_inputs(M, N, K, "cuda", _gen())
        problems.append(((a, sa, w, s, None, kw["alpha"], True),
                         ref.nvfp4_w4a4_decode_matvec_bf16out(a, w, sa, s, **kw),
                         cases.gemm_tolerance(K, kw["alpha"],
                                              cases.E2M1_MEAN_SQ * cases.SCALE_MEAN_SQ)["gemm"]))
    cfgs = [nm.mma_config(M, N, K // 2, dev), nm.mma_config(M, N, K // 2, dev, waves=0),
            nm.mma_config(M, N, K // 2, dev, waves=64, min_steps=1)]
    cfgs += [nm.mma_config(M, N, K // 2, dev, w_, r_, kc, depth=d)
             for w_, r_, kc, d in MMA_TILES]
    for (x, sx, w, s, bias, alpha, a_fp4), want, tol in problems:
        for cfg in cfgs:
            outs = []
            for _ in range(2):
                out = torch.full((M, N), float("nan"), dtype=torch.bfloat16, device=dev)
                sm._launch_gemm(x, sx, w, s, bias, out, M, alpha, a_fp4, cfg)
                outs.append(out)
            assert torch.equal(_bits(outs[0]), _bits(outs[1])), cfg
            assert bool((counters == 0).all()), cfg
            v = compare("gemm", outs[0], want.reshape(M, N), **tol)
            assert v.ok, f"{cfg}: {v.message}"


@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(4, 200, 4160), (16, 72, 2112)])
def test_mma_split_sum_batches_keep_the_bits(kernel, M, N, K, monkeypatch):
    """The last split sums the partials in split order whatever number of them has its
    loads in flight at once (``sum_batch``): 1, 3, 8 (the rule's) and 16 give the same
    bits, with more splits than one batch and a count that is not a multiple of it."""
    nm = _mma(kernel, "cuda")
    sm = _smallm(kernel)
    dev = torch.device("cuda")
    counters = torch.zeros(4096, dtype=torch.int32, device=dev)
    monkeypatch.setattr(sm._COUNTERS, "get", lambda d, count: counters)
    (x, w, s), kw = cases.linear_inputs(M, N, K, "cuda", _gen())
    cfg = nm.mma_config(M, N, K // 2, dev, waves=64, min_steps=1)
    assert cfg[4] > 16 and cfg[4] % 8, cfg  # n_split
    outs = []
    for batch in (1, 3, 8, 16):
        out = torch.full((M, N), float("nan"), dtype=torch.bfloat16, device=dev)
        sm._launch_gemm(x, None, w, s, kw["bias"], out, M, kw["alpha"], False, cfg,
                        sum_batch=batch)
        outs.append(_bits(out))
        assert bool((counters == 0).all()), batch
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    want = reference_of(kernel).nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    assert compare("gemm", outs[0].view(torch.bfloat16), want,
                   **cases.gemm_tolerance(K, kw["alpha"], 1.0)["gemm"]).ok


@pytest.mark.gpu
def test_mma_graph_replay_and_leading_dims(kernel):
    """The rule's mma launch (split-K, pooled counters) captured in a CUDA graph replays
    the eager bits; x with leading dimensions is read as its flattened rows."""
    _mma(kernel, "cuda")
    sm = _smallm(kernel)
    M, N, K = 12, 1024, 4096
    (x, w, s), kw = cases.linear_inputs(M, N, K, "cuda", _gen(), lead=(3, 4))
    if not sm.uses_mma(M, torch.device("cuda")):
        pytest.skip("the launch rule does not take the mma kernel yet (nvfp4_mma.IN_RULE)")
    assert sm.gemm_config(M, N, K // 2, torch.device("cuda"))[0] == "mma"
    eager = kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    out = torch.empty_like(eager)
    g = torch.cuda.CUDAGraph()
    kernel.nvfp4_weight_only_linear_bf16(x, w, s, out=out, **kw)  # warm up
    with torch.cuda.graph(g):
        kernel.nvfp4_weight_only_linear_bf16(x, w, s, out=out, **kw)
    out.zero_()
    g.replay()
    torch.cuda.synchronize()
    assert torch.equal(_bits(out), _bits(eager))
    flat = kernel.nvfp4_weight_only_linear_bf16(x.reshape(M, K), w, s, **kw)
    assert torch.equal(_bits(flat.reshape(eager.shape)), _bits(eager))


def test_linear_rows_past_one_dot_tile_split_k(kernel, device, monkeypatch):
    """Catches tl.dot row tiles (> 64 rows, split-K) sharing rows, workspace slots, counters."""
    sm = _smallm(kernel)
    M, N, K = 130, 40, 1040
    cfg = sm.gemm_config(M, N, K // 2, torch.device(device))
    assert cfg[0] == "dot" and -(-M // cfg[1]) > 1 and cfg[4] > 1, cfg
    counters = torch.zeros(64, dtype=torch.int32, device=device)
    monkeypatch.setattr(sm._COUNTERS, "get", lambda dev, count: counters)
    (x, w, s), kw = cases.linear_inputs(M, N, K, device, _gen())
    got = kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    assert bool((counters == 0).all())
    want = reference_of(kernel).nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    tol = cases.gemm_tolerance(K, 0.5, 1.0)["gemm"]
    for rows in (slice(0, 64), slice(64, 128), slice(128, M)):  # every row tile on its own
        assert compare("gemm", got[rows], want[rows], **tol).ok, rows


def _fill_padding(ref, sf, rows, K, gen):
    """A copy of swizzled scales ``sf`` with every padding byte set to random UE4M3 bytes."""
    pad = torch.ones(sf.numel(), dtype=torch.bool)
    pad[ref.swizzled_offsets(rows, K // 16).flatten()] = False
    junk = torch.randint(0x30, 0x40, (sf.numel(),), generator=gen, dtype=torch.uint8)
    return torch.where(pad, junk, sf.cpu()).to(sf.device)


@pytest.mark.parametrize("M", [1, 5, 40])  # GEMV, tl.dot (split-K), tl.dot 64-row tile
def test_scale_padding_bytes_are_not_read(kernel, device, M):
    """Catches K-tail blocks read past K (weighted by padding scales): junk padding, same bits."""
    N, K = 72, 1040  # 65 blocks: a ragged last K step and column group
    gen = torch.Generator().manual_seed(5)
    ref = reference_of(kernel)
    (x, w, s), kw = cases.linear_inputs(M, N, K, device, _gen())
    s_junk = _fill_padding(ref, s, N, K, gen)
    assert not torch.equal(s_junk, s)
    y = kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    assert torch.equal(_bits(kernel.nvfp4_weight_only_linear_bf16(x, w, s_junk, **kw)), _bits(y))
    (a, b, sfa, sfb), mkw = cases.matvec_inputs(M, N, K, device, _gen())
    z = kernel.nvfp4_w4a4_decode_matvec_bf16out(a, b, sfa, sfb, **mkw)
    z_junk = kernel.nvfp4_w4a4_decode_matvec_bf16out(a, b, _fill_padding(ref, sfa, M, K, gen),
                                                     _fill_padding(ref, sfb, N, K, gen), **mkw)
    assert torch.equal(_bits(z_junk), _bits(z))
    assert compare("gemm", y, ref.nvfp4_weight_only_linear_bf16(x, w, s, **kw),
                   **cases.gemm_tolerance(K, 0.5, 1.0)["gemm"]).ok


@pytest.mark.parametrize("M", [1, 3, 20])
def test_out_view_leaves_its_neighbours_untouched(kernel, device, M):
    """Catches M- / N-tail store masks writing outside ``out`` (a row slice of a NaN buffer)."""
    N, K = 40, 160
    (x, w, s), kw = cases.linear_inputs(M, N, K, device, _gen())
    (a, b, sfa, sfb), mkw = cases.matvec_inputs(M, N, K, device, _gen())
    for fn, args, kwargs in ((kernel.nvfp4_weight_only_linear_bf16, (x, w, s), kw),
                             (kernel.nvfp4_w4a4_decode_matvec_bf16out, (a, b, sfa, sfb), mkw)):
        big = torch.full((M + 2, N), float("nan"), dtype=torch.bfloat16, device=device)
        out = big[1:M + 1]
        assert fn(*args, **kwargs, out=out) is out
        assert bool(big[0].isnan().all()) and bool(big[M + 1].isnan().all())
        assert torch.equal(_bits(out), _bits(fn(*args, **kwargs).reshape(M, N)))


@pytest.mark.parametrize("M,N,K", [(3, 130, 80), (1, 16, 208)])
def test_scale_buffer_one_byte_short_is_rejected(kernel, device, M, N, K):
    """Catches a wrong bytes(rows, K) at ragged rows / blocks: 1 byte short raises, exact passes."""
    def need(rows):  # spec §0.3: ceil(rows / 128) * ceil(K / 64) * 512
        return -(-rows // 128) * -(-K // 64) * 512

    (a, b, sfa, sfb), mkw = cases.matvec_inputs(M, N, K, device, _gen())
    (x, w, s), kw = cases.linear_inputs(M, N, K, device, _gen())
    assert sfa.numel() == need(M) and sfb.numel() == need(N) and s.numel() == need(N)
    with pytest.raises(RuntimeError, match="sfa must contain at least"):
        kernel.nvfp4_w4a4_decode_matvec_bf16out(a, b, sfa[:-1], sfb, **mkw)
    with pytest.raises(RuntimeError, match="sfb must contain at least"):
        kernel.nvfp4_w4a4_decode_matvec_bf16out(a, b, sfa, sfb[:-1], **mkw)
    with pytest.raises(RuntimeError, match="w_scales must contain at least"):
        kernel.nvfp4_weight_only_linear_bf16(x, w, s[:-1], **kw)
    kernel.nvfp4_w4a4_decode_matvec_bf16out(a, b, sfa, sfb, **mkw)
    kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw)


def test_one_row_with_unaligned_operands_takes_the_dot_kernel(kernel, device):
    """Catches the GEMV taken at M = 1 for operands that are not 8-byte aligned (int64 words)."""
    sm = _smallm(kernel)
    N, K = 24, 256
    assert sm.gemm_config(1, N, K // 2, torch.device(device), words_aligned=False)[0] == "dot"

    def shifted(t):
        buf = torch.empty(t.numel() + 4, dtype=torch.uint8, device=device)
        v = buf[4:].view(t.shape)
        v.copy_(t)
        assert v.data_ptr() % 8 != 0
        return v

    (x, w, s), kw = cases.linear_inputs(1, N, K, device, _gen())
    want = kernel.nvfp4_weight_only_linear_bf16(x, w, s, **kw)
    got = kernel.nvfp4_weight_only_linear_bf16(x, shifted(w), s, **kw)
    assert compare("gemm", got, want, **cases.gemm_tolerance(K, 0.5, 1.0)["gemm"]).ok
    (a, b, sfa, sfb), mkw = cases.matvec_inputs(1, N, K, device, _gen(), one_d=True)
    want = kernel.nvfp4_w4a4_decode_matvec_bf16out(a, b, sfa, sfb, **mkw)
    tol = cases.gemm_tolerance(K, 0.25, cases.E2M1_MEAN_SQ * cases.SCALE_MEAN_SQ)["gemm"]
    for args in ((shifted(a), b, sfa, sfb), (a, shifted(b), sfa, sfb)):
        got = kernel.nvfp4_w4a4_decode_matvec_bf16out(*args, **mkw)
        assert compare("gemm", got, want, **tol).ok


def test_dot_tile_rule_row_boundaries(kernel, device):
    """Catches moved row-class boundaries of dot_config's tiles (16 / 32 / 64 rows; CARD)."""
    sm = _smallm(kernel)
    dev = torch.device(device)
    for M, bm, bn, warps, bk in ((16, 16, 64, 4, 64), (17, 32, 64, 4, 64), (32, 32, 64, 4, 64),
                                 (33, 64, 128, 8, 128), (64, 64, 128, 8, 128)):
        cfg = sm.dot_config(M, 4096, 4096 // 16, dev)
        assert (cfg[1], cfg[2], cfg[6], cfg[3]) == (bm, bn, warps, bk), (M, cfg)


def _quant_boundary_weight():
    """bf16 weight rows of 16-element blocks at the encoder's edges (global_scale 1): for
    scales s (UE4M3 subnormals m / 512, the normal boundary, 1, 240, 448) a block of amax
    exactly 6 s and one just above it (scale rounds up), holding the E2M1 ties (x s, both
    signs) and their bf16 neighbours below; then a zero block, tiny negatives (negative-zero
    codes), an all-NaN block, +-inf and huge values (saturation)."""
    ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    blocks = []
    for s in [m / 512 for m in range(1, 9)] + [1.0, 240.0, 448.0]:
        for bump in (False, True):
            amax = torch.tensor(6 * s).to(torch.bfloat16)
            if bump:
                amax = torch.nextafter(amax, torch.tensor(float("inf"), dtype=torch.bfloat16))
            t = (ties * s).to(torch.bfloat16)
            below = torch.nextafter(t, torch.zeros_like(t))
            blk = torch.cat([amax.reshape(1).float(), t.float(), -below[:-1].float(),
                             -t[-1:].float(), below[-1:].float()])
            blocks.append(blk)
    blocks.append(torch.zeros(16))
    blocks.append(torch.cat([torch.tensor([-0.375]), -torch.rand(15, generator=_gen()) / 256]))
    blocks.append(torch.full((16,), float("nan")))
    blocks.append(torch.tensor([float("inf"), -float("inf")] + [1.0, -2.0] * 7))
    blocks.append(torch.tensor([3e38, -1e30] + [float(v) for v in range(-7, 7)]))
    w = torch.stack(blocks).to(torch.bfloat16)  # [27, 16]: pad to rows of 2 blocks
    return torch.cat([w, w[:1]]).reshape(-1, 32)


def test_quantize_boundary_scales_ties_and_specials(kernel, device):
    """Catches encoder edge bugs: subnormal / 240 scale bounds, E2M1 ties, -0 codes, NaN, inf."""
    w = _quant_boundary_weight().to(device)
    N, K = w.shape
    packed, scales = kernel.nvfp4_quantize_weight_bf16(w)
    ref = reference_of(kernel)
    want_p, want_s = ref.nvfp4_quantize_weight_bf16(w)
    assert torch.equal(packed, want_p) and torch.equal(scales, want_s)
    lin = scales[ref.swizzled_offsets(N, K // 16, device)].flatten()
    codes = torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(-1, 16)
    # block 2 (s = 2 / 512, exact): scale 0x02, amax -> 7, ties 1..7 -> codes 1..7 rounded up
    assert lin[2].item() == 0x02 and codes[2].tolist()[:8] == [7, 1, 2, 3, 4, 5, 6, 7]
    assert lin[3].item() == 0x03  # amax just above 6 * 2 / 512: the next subnormal scale
    assert lin[12].item() == 0x07 and lin[13].item() == 0x08  # 7 / 512; bumped: 2^-6
    assert lin[14].item() == 0x08 and lin[15].item() == 0x09  # 2^-6, the first normal
    assert lin[18].item() == 0x77 and lin[19].item() == 0xFE  # t = 240 and t just above
    assert lin[24].item() == 0xFE and codes[24].tolist() == [7] * 16  # all NaN
    assert codes[23].tolist() == [15] + [8] * 15  # scale 1/16: tiny negatives -> -0 codes
