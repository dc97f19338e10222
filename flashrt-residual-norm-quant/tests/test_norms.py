"""Tests of flashrt-residual-norm-quant, loaded through `kernels` from a fresh build.

On CPU the Triton kernels run in the interpreter (small shapes); on a GPU the
same tests run natively, plus model-sized cases, CUDA-graph capture and compile
with Inductor. Every output (the in-place residual included) is checked against
reference.py; outputs are poisoned first so unwritten elements fail.
"""

import importlib

import pytest
import torch

from flashrt_tools.repo import ROOT, load_file
from flashrt_tools.tolerance import compare
from flashrt_tools.validation import reference_of, run_case

cases = load_file(ROOT / "flashrt-residual-norm-quant" / "tests" / "cases.py",
                  "_flashrt_cases_flashrt_residual_norm_quant")

GEN_SEED = 1234
FUNCTIONS = sorted(cases.FUNCTIONS)


def _gen(seed=GEN_SEED):
    return torch.Generator().manual_seed(seed)


def _poison(shape, dtype, device):
    if dtype == torch.float8_e4m3fn:  # 0x7f is NaN in e4m3fn
        return torch.full(shape, 0x7F, dtype=torch.uint8, device=device).view(dtype)
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def _bits(t):
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]).clone()


def _out_dtype(function):
    return torch.float8_e4m3fn if cases.FUNCTIONS[function][1] == "fp8" else torch.bfloat16


def _call(kernel, function, kw, out=None, **extra):
    return getattr(kernel, function)(*kw.values(), out=out, **extra)


# --- accuracy: every output of every function, ragged sizes ---------------------------------


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_matches_reference(kernel, device, case):
    verdicts, _ = run_case(kernel, reference_of(kernel), case, device, seed=GEN_SEED)
    for v in verdicts:
        assert v.ok, f"{case.id}: {v.message}"


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("rows,dim", [(3, 130), (2, 8200)], ids=["D=130", "D=8200-chunked"])
def test_out_buffer_and_residual_in_place(kernel, device, function, rows, dim):
    """``got is out``; the residual variants update ``residual`` to bf16(residual + x)
    exactly, and their output matches the rounded-residual / unrounded-RMS ordering."""
    flags, fmt = cases.FUNCTIONS[function]
    kw = cases.norm_inputs(rows, dim, device, _gen(), **flags)
    original = {k: v.clone() for k, v in kw.items()}
    out = _poison((rows, dim), _out_dtype(function), device)
    got = _call(kernel, function, kw, out, eps=1e-5)
    assert got is out
    ref = reference_of(kernel)
    if flags.get("residual"):
        want, want_res = getattr(ref, function + "_with_residual")(*original.values(), eps=1e-5)
        assert compare("exact", kw["residual"], want_res).ok
        assert compare("exact", kw["residual"],
                       (original["residual"].float() + original["x"].float()).bfloat16()).ok
    else:
        want = getattr(ref, function)(*original.values(), eps=1e-5)
    v = compare(fmt, out, want)
    assert v.ok, v.message
    for name in kw:  # inputs other than the residual are never written
        if name != "residual":
            assert torch.equal(_bits(kw[name]), _bits(original[name])), name


def test_residual_ordering_rounded_value_unrounded_rms(kernel, device):
    """The bf16 output normalizes bf16(a) with the RMS of the unrounded a (spec §3.2):
    against a reference that normalizes the unrounded a it differs where rounding a
    moved the result, against the spec ordering it is within 1 ulp everywhere."""
    rows, dim = 4, 256
    kw = cases.norm_inputs(rows, dim, device, _gen(5), residual=True)
    kw["x"] = (kw["x"].float() * 37.0).bfloat16()  # large sums: bf16(a) far from a
    original = {k: v.clone() for k, v in kw.items()}
    out = kernel.residual_add_rms_norm_bf16(kw["residual"], kw["x"], kw["weight"])
    ref = reference_of(kernel)
    assert compare("bf16", out, ref.residual_add_rms_norm_bf16(*original.values())).ok
    a = original["residual"].float() + original["x"].float()
    unrounded = ref.rms_norm_fp32(a, original["weight"], 1e-6).bfloat16()
    assert not compare("bf16", out, unrounded, ulps=0, atol=0).ok


def test_fp8_saturates_not_nan(kernel, device):
    kw = cases.norm_inputs(3, 64, device, _gen(), quant=True, scale=1e-4)
    out = kernel.rms_norm_quant_fp8_static_bf16(**kw)
    assert not torch.isnan(out.float()).any()
    assert out.float().abs().max() == 448.0
    ref = reference_of(kernel).rms_norm_quant_fp8_static_bf16(**kw)
    assert compare("fp8", out, ref).ok


@pytest.mark.parametrize("function", [f for f in FUNCTIONS if "fp8" in f])
def test_fp8_nan_maps_to_minus_448(kernel, device, function):
    """Spec §0.2 edge case: the clamp's max/min drop a NaN operand (CUDA fminf/fmaxf), so a
    row whose RMS is NaN quantizes to -448 everywhere, not NaN and not +448; the other rows
    are unaffected."""
    flags, _ = cases.FUNCTIONS[function]
    kw = cases.norm_inputs(3, 130, device, _gen(), **flags)
    kw["x"][1, 7] = float("nan")
    keep = torch.tensor([0, 2], device=device)  # rows are independent
    finite = {k: (v[keep] if v.dim() == 2 else v).clone() for k, v in kw.items()}
    out = _call(kernel, function, kw)
    assert torch.equal(out[1].float(), torch.full((130,), -448.0, device=device))
    v = compare("fp8", out[keep], getattr(reference_of(kernel), function)(*finite.values()))
    assert v.ok, v.message
    if flags.get("residual"):
        want_res = (finite["residual"].float() + finite["x"].float()).bfloat16()
        assert compare("exact", kw["residual"][keep], want_res).ok


def test_fp8_power_of_two_scale_byte_parity(kernel, device):
    """With scale 2^-5 multiply-by-reciprocal equals division: codes equal the reference's."""
    kw = cases.norm_inputs(9, 1030, device, _gen(), quant=True, scale=0.03125)
    v = compare("fp8", kernel.rms_norm_quant_fp8_static_bf16(**kw),
                reference_of(kernel).rms_norm_quant_fp8_static_bf16(**kw), max_step_rate=0.0)
    assert v.ok, v.message


# --- launch shapes: every kernel path, at the dispatch boundaries -----------------------------


def _norms(kernel):
    return importlib.import_module(f"{kernel.__name__}.norms")


# RowConfig fields but block_d (the row's power of two): one row per tile, several rows per
# tile, a persistent grid (on the CPU interpreter 4 "SMs": every program loops over many
# tiles, prefetching the next), a chunked row (chunk far narrower than the row: several
# chunks and a masked tail).
LAUNCH_SHAPES = {"tile1": (False, 1, 1, 0), "tile4": (False, 4, 2, 0),
                 "persistent": (False, 2, 2, 1), "chunked": (True, 1, 1, 0)}


def _reference_checking_residual(kernel, function, flags, original, kw, **eps):
    """The reference output for the original inputs; for the residual variants also
    asserts that the kernel's in-place residual update equals the reference's (NaN
    positions included)."""
    ref = reference_of(kernel)
    if not flags.get("residual"):
        return getattr(ref, function)(*original.values(), **eps)
    want, want_res = getattr(ref, function + "_with_residual")(*original.values(), **eps)
    assert compare("exact", kw["residual"], want_res).ok
    return want


def _default_eps(function):
    """The spec's default eps of each function (§0.2): LayerNorm 1e-5, RMSNorm 1e-6."""
    return 1e-5 if function == "layer_norm_bf16" else 1e-6


@pytest.mark.parametrize("eps", [None, 1.0], ids=["eps=default", "eps=1"])
@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("shape", LAUNCH_SHAPES)
@pytest.mark.parametrize("rows,dim", [(1, 126), (37, 130)])
def test_every_launch_shape_matches_reference(kernel, device, function, shape, rows, dim, eps):
    """Each kernel path on 1 row and on a ragged row count (persistent: 19 tiles over 4
    programs); every output (and the in-place residual) against the reference. eps = 1
    against mean squares (variances) of 4-8: a dropped eps, or one added outside the
    root, moves the outputs by ~10% (the default eps is lost in fp32 rounding at these
    magnitudes)."""
    eps = _default_eps(function) if eps is None else eps
    norms = _norms(kernel)
    chunked, block_r, num_warps, persistent = LAUNCH_SHAPES[shape]
    block_d = 32 if chunked else norms.next_power_of_2(dim)
    cfg = norms.RowConfig(chunked, block_r, block_d, num_warps, persistent)
    flags, fmt = cases.FUNCTIONS[function]
    kw = cases.norm_inputs(rows, dim, device, _gen(rows), **flags)
    original = {k: v.clone() for k, v in kw.items()}
    out = _poison((rows, dim), _out_dtype(function), device)
    if function == "layer_norm_bf16":
        norms._launch_layer_norm(kw["x"], kw["weight"], kw["bias"], out, eps, cfg)
    else:
        norms._launch_rms(kw["x"], kw.get("residual"), kw["weight"], kw.get("scale"), out, eps,
                          cfg)
    want = _reference_checking_residual(kernel, function, flags, original, kw, eps=eps)
    v = compare(fmt, out, want)
    assert v.ok, v.message


def test_launch_rule_boundaries(kernel, device):
    """row_config at its edges: the widest register row (8192, LayerNorm too) and the first
    chunked one, the few-rows/many-rows boundary (FEW_ROWS_PER_SM rows per SM), the
    persistent grid for static FP8 without residual only; LayerNorm: 16 elements per
    thread on few rows, two unrolled chunks on many 4096-wide rows, the weight/bias
    placement and the unrolled chunk count."""
    norms = _norms(kernel)
    C = norms.RowConfig
    few = norms.FEW_ROWS_PER_SM * norms.sm_count(device)
    assert norms.few_rows(few, device) and not norms.few_rows(few + 1, device)
    assert not norms.row_config(8192, few, device).chunked
    assert norms.row_config(8194, few, device) == C(True, 1, norms.CHUNK, 8)
    ln = lambda D, rows: norms.row_config(D, rows, device, layer_norm=True)  # noqa: E731
    for rows in (few, few + 1):
        assert not ln(8192, rows).chunked
        assert ln(8194, rows) == C(True, 1, norms.CHUNK, 8)
    assert ln(2048, few) == C(False, 1, 2048, 4) and ln(8192, few) == C(False, 1, 8192, 16)
    assert ln(4096, few) == C(False, 1, 4096, 8)
    assert ln(2048, few + 1) == C(False, 1, 2048, 4)  # many rows: 16 elements per thread
    assert ln(4096, few + 1) == ln(2050, few + 1) == C(True, 1, norms.LN_CHUNK, 8)
    assert ln(4098, few + 1) == ln(8192, few + 1) == C(False, 1, 8192, 8)
    late = lambda D, rows: norms.layer_norm_late_affine(ln(D, rows), rows, device)  # noqa
    assert not late(4096, few) and late(8192, few) and late(4098, few)
    assert late(1152, few + 1) and late(8192, few + 1)
    unrolled = norms.layer_norm_unrolled_chunks
    assert unrolled(ln(4096, few + 1), 4096) == unrolled(ln(2050, few + 1), 2050) == 2
    assert unrolled(C(True, 1, 2048, 8), 8192) == 4 and unrolled(ln(8194, few), 8194) == 0
    for quant, residual in ((False, False), (True, False), (False, True), (True, True)):
        small = norms.row_config(2048, few, device, quant=quant, residual=residual)
        large = norms.row_config(2048, few + 1, device, quant=quant, residual=residual)
        assert small == norms.RowConfig(False, 1, 2048, 8)  # 8 elements per thread
        assert (large.persistent > 0) == (quant and not residual)
        assert large.block_r == 1 and 2048 // (32 * large.num_warps) in (16, 32)

        def late_w(D, rows):
            cfg = norms.row_config(D, rows, device, quant=quant, residual=residual)
            return norms.rms_late_weight(cfg, rows, device, quant=quant, residual=residual)
        # the weight after the reduction: many 8192-wide rows of FP8 add + RMSNorm only
        assert late_w(8192, few + 1) == (quant and residual)
        assert not late_w(8192, few) and not late_w(4096, few + 1) and not late_w(8194, few + 1)


@pytest.mark.parametrize("late_affine", [False, True], ids=["affine_early", "affine_late"])
@pytest.mark.parametrize("rows,dim", [(33, 8192), (3, 8190), (5, 6146), (37, 4098), (2, 1152)])
def test_layer_norm_register_row_affine_placement(kernel, device, late_affine, rows, dim):
    """The register LayerNorm path up to 8192 wide with the weight and bias loaded before
    or after the statistics (the launch default: after for many rows and 8192-wide rows,
    see layer_norm_late_affine): ragged widths
    below the 8192 boundary (masked tails of the power-of-two block), against the
    reference, the same bits either way."""
    norms = _norms(kernel)
    block_d = norms.next_power_of_2(dim)
    cfg = norms.RowConfig(False, 1, block_d, max(1, min(8, block_d // 512)))
    kw = cases.norm_inputs(rows, dim, device, _gen(dim), bias=True)
    outs = []
    for late in (late_affine, not late_affine):
        out = _poison((rows, dim), torch.bfloat16, device)
        norms._launch_layer_norm(kw["x"], kw["weight"], kw["bias"], out, 1e-5, cfg,
                                 late_affine=late)
        outs.append(out)
    v = compare("bf16", outs[0], reference_of(kernel).layer_norm_bf16(**kw))
    assert v.ok, v.message
    assert torch.equal(_bits(outs[0]), _bits(outs[1]))


@pytest.mark.parametrize("function", [f for f in FUNCTIONS if f != "layer_norm_bf16"])
@pytest.mark.parametrize("rows,dim", [(33, 8192), (3, 4098), (37, 130)])
def test_rms_register_row_weight_placement(kernel, device, function, rows, dim):
    """The RMSNorm register row with the weight loaded beside x or after the reduction
    (the launch default: after for many 8192-wide FP8 add + RMSNorm rows, see
    rms_late_weight): against the reference (the in-place residual exact), the same bits
    either way."""
    norms = _norms(kernel)
    block_d = norms.next_power_of_2(dim)
    cfg = norms.RowConfig(False, 1, block_d, max(1, min(8, block_d // 512)))
    flags, fmt = cases.FUNCTIONS[function]
    kw = cases.norm_inputs(rows, dim, device, _gen(dim), **flags)
    original = {k: v.clone() for k, v in kw.items()}
    outs = []
    for late in (False, True):
        if flags.get("residual"):
            kw["residual"].copy_(original["residual"])
        out = _poison((rows, dim), _out_dtype(function), device)
        norms._launch_rms(kw["x"], kw.get("residual"), kw["weight"], kw.get("scale"), out, 1e-6,
                          cfg, late_w=late)
        outs.append(out)
    want = _reference_checking_residual(kernel, function, flags, original, kw)
    v = compare(fmt, outs[0], want)
    assert v.ok, v.message
    assert torch.equal(_bits(outs[0]), _bits(outs[1]))


@pytest.mark.parametrize("rows,dim", [(5, 4094), (3, 2050), (2, 8190), (3, 130)])
def test_layer_norm_chunked_unrolled_equals_loop(kernel, device, rows, dim):
    """The chunked LayerNorm row unrolled (rows up to the register block, eviction hints)
    and as a loop over the chunks (wider rows): ragged widths, masked tail chunks, the
    same bits, both against the reference."""
    norms = _norms(kernel)
    cfg = norms.RowConfig(True, 1, 2048 if dim > 2048 else 32, 8)
    assert norms.layer_norm_unrolled_chunks(cfg, dim) == -(-dim // cfg.block_d)
    kw = cases.norm_inputs(rows, dim, device, _gen(dim), bias=True)
    unrolled = _poison((rows, dim), torch.bfloat16, device)
    norms._launch_layer_norm(kw["x"], kw["weight"], kw["bias"], unrolled, 1e-5, cfg)
    loop = _poison((rows, dim), torch.bfloat16, device)
    norms._layer_norm_kernel[(rows,)](kw["x"], kw["weight"], kw["bias"], loop, rows, dim, 1e-5,
                                      CHUNKED=True, PERSISTENT=False, LATE_AFFINE=False,
                                      N_CHUNKS=0, BLOCK_R=1, BLOCK_D=cfg.block_d, num_warps=8,
                                      enable_fp_fusion=False)
    v = compare("bf16", unrolled, reference_of(kernel).layer_norm_bf16(**kw))
    assert v.ok, v.message
    assert torch.equal(_bits(unrolled), _bits(loop))


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("rows,dim", [(1, 4094), (33, 2050), (33, 4094), (33, 4098), (2, 8192),
                                      (33, 8192), (33, 8194)])
def test_dispatch_boundaries_match_reference(kernel, device, function, rows, dim):
    """Public calls either side of the launch rule's edges (register row vs chunked, few
    rows vs many: on the CPU interpreter 4 SMs, so 33 rows is "many"; many LayerNorm rows
    up to 4096 wide run two unrolled chunks)."""
    case = cases._case(function, rows, dim)
    verdicts, _ = run_case(kernel, reference_of(kernel), case, device, seed=GEN_SEED)
    for v in verdicts:
        assert v.ok, f"{case.id}: {v.message}"


# --- bad inputs: the spec's error, nothing written -------------------------------------------

BAD = {
    # kind: (functions it applies to, edit(kw, out, device) -> out, message)
    "odd_dim": (FUNCTIONS, None, "x.shape\\[1\\] must be even for packed BF16 path"),
    "rank": (FUNCTIONS, None, "x must be a 2D tensor"),
    "empty": (FUNCTIONS, None, "x dimensions must be non-zero"),
    "x_dtype": (FUNCTIONS, None, "x must have dtype torch.bfloat16"),
    "x_contiguity": (FUNCTIONS, None, "x must be contiguous"),
    "out_transposed": (FUNCTIONS, None, "out must be contiguous"),
    "out_shape": (FUNCTIONS, None, "out must have the same shape as x"),
    "out_dtype": (FUNCTIONS, None, "out must have dtype"),
    "weight_shape": (FUNCTIONS, None, "must have shape \\(x.shape\\[1\\],\\)"),
    "weight_dtype": (FUNCTIONS, None, "weight must have dtype torch.bfloat16"),
    "bias_shape": (["layer_norm_bf16"], None, "weight and bias must have shape \\(x.shape\\[1\\],\\)"),
    "residual_shape": ([f for f in FUNCTIONS if "residual" in f], None,
                       "residual and x must have the same shape"),
    "residual_dtype": ([f for f in FUNCTIONS if "residual" in f], None,
                       "residual must have dtype torch.bfloat16"),
    "scale_numel": ([f for f in FUNCTIONS if "fp8" in f], None,
                    "scale must contain exactly one value"),
    "scale_dtype": ([f for f in FUNCTIONS if "fp8" in f], None,
                    "scale must have dtype torch.float32"),
}
BAD_PARAMS = [(f, k) for k, (fs, _, _) in sorted(BAD.items()) for f in fs]


def _bad_inputs(function, kind, device):
    flags, _ = cases.FUNCTIONS[function]
    rows, dim = 4, 128
    kw = cases.norm_inputs(rows, dim, device, _gen(), **flags)
    out = _poison((rows, dim), _out_dtype(function), device)
    if kind == "odd_dim":
        for k in ("residual", "x"):
            if k in kw:
                kw[k] = kw[k][:, :127].contiguous()
        kw["weight"] = kw["weight"][:127].contiguous()
        if "bias" in kw:
            kw["bias"] = kw["bias"][:127].contiguous()
        out = out[:, :127].contiguous()
    elif kind == "rank":
        for k in ("residual", "x"):
            if k in kw:
                kw[k] = kw[k].reshape(2, 2, dim)
        out = out.reshape(2, 2, dim)
    elif kind == "empty":
        for k in ("residual", "x"):
            if k in kw:
                kw[k] = kw[k][:0]
        out = out[:0]
    elif kind == "x_dtype":
        kw["x"] = kw["x"].float()
    elif kind == "x_contiguity":
        kw["x"] = torch.empty(dim, rows, dtype=torch.bfloat16, device=device).t()
    elif kind == "out_transposed":
        out = _poison((dim, rows), out.dtype, device).t()
    elif kind == "out_shape":
        out = _poison((rows + 1, dim), out.dtype, device)
    elif kind == "out_dtype":
        out = _poison((rows, dim), torch.float16, device)
    elif kind == "weight_shape":
        kw["weight"] = kw["weight"][:-2].contiguous()
    elif kind == "weight_dtype":
        kw["weight"] = kw["weight"].float()
    elif kind == "bias_shape":
        kw["bias"] = torch.ones(dim + 2, dtype=torch.bfloat16, device=device)
    elif kind == "residual_shape":
        kw["residual"] = kw["residual"][:-1].contiguous()
    elif kind == "residual_dtype":
        kw["residual"] = kw["residual"].half()
    elif kind == "scale_numel":
        kw["scale"] = torch.full((2,), 0.04, device=device)
    elif kind == "scale_dtype":
        kw["scale"] = kw["scale"].double()
    return kw, out


@pytest.mark.parametrize("function,kind", BAD_PARAMS, ids=lambda x: x)
def test_bad_inputs_raise_and_write_nothing(kernel, device, function, kind):
    kw, out = _bad_inputs(function, kind, device)
    before = {k: _bits(v) for k, v in kw.items()}
    before_out = _bits(out)
    with pytest.raises(RuntimeError, match=BAD[kind][2]):
        _call(kernel, function, kw, out)
    assert torch.equal(_bits(out), before_out)
    for k, b in before.items():  # residual (and every input) untouched
        assert torch.equal(_bits(kw[k]), b), k


@pytest.mark.gpu
def test_cpu_tensor_rejected_on_gpu(kernel):
    kw = cases.norm_inputs(2, 64, torch.device("cuda"), _gen())
    kw["x"] = kw["x"].cpu()
    with pytest.raises(RuntimeError, match="x must be a CUDA tensor"):
        kernel.rms_norm_bf16(**kw)


@pytest.mark.gpu
def test_scale_on_cpu_rejected_on_gpu(kernel):
    kw = cases.norm_inputs(2, 64, torch.device("cuda"), _gen(), quant=True)
    kw["scale"] = kw["scale"].cpu()
    with pytest.raises(RuntimeError, match="scale must be a CUDA tensor"):
        kernel.rms_norm_quant_fp8_static_bf16(**kw)


# --- torch.library contracts, torch.compile, CUDA graphs -----------------------------------------


def _ops(kernel):
    return importlib.import_module(f"{kernel.__name__}._ops").ops


OPCHECK_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor",
                 "test_aot_dispatch_dynamic")


def _op_args(function, kw, out, eps=None):
    """Schema order: inputs, eps, out (spec §3.2); eps None: the function's default."""
    return (*kw.values(), _default_eps(function) if eps is None else eps, out)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_opcheck(kernel, device, function):
    flags, _ = cases.FUNCTIONS[function]
    kw = cases.norm_inputs(3, 64, device, _gen(), **flags)
    out = torch.empty(3, 64, dtype=_out_dtype(function), device=device)
    op = getattr(_ops(kernel), function)
    utils = OPCHECK_UTILS
    if out.dtype == torch.float8_e4m3fn:
        # opcheck's test_schema compares tensors with arithmetic torch lacks for
        # float8 ("mul_cpu_reduced_float" not implemented); the mutation contract it
        # checks is asserted below from the schema and the bits instead.
        utils = tuple(u for u in OPCHECK_UTILS if u != "test_schema")
    torch.library.opcheck(op, _op_args(function, kw, out), test_utils=utils)
    written = {a.name for a in op.default._schema.arguments
               if a.alias_info is not None and a.alias_info.is_write}
    assert written == ({"residual", "out"} if "residual" in kw else {"out"})


@pytest.mark.parametrize("function", FUNCTIONS)
def test_direct_launch_equals_op(kernel, device, function):
    """Eager wrappers launch directly (host time); the registered op gives the same bits.
    eps = 0.5 (mean squares ~4-8): both paths must pass the caller's eps to the kernel."""
    flags, fmt = cases.FUNCTIONS[function]
    kw = cases.norm_inputs(5, 130, device, _gen(), **flags)
    original = {k: v.clone() for k, v in kw.items()}
    kw2 = {k: v.clone() for k, v in kw.items()}
    a = _call(kernel, function, kw, eps=0.5)
    b = torch.empty_like(a)
    getattr(_ops(kernel), function)(*_op_args(function, kw2, b, eps=0.5))
    assert torch.equal(_bits(a), _bits(b))
    if "residual" in kw:
        assert torch.equal(_bits(kw["residual"]), _bits(kw2["residual"]))
    want = _reference_checking_residual(kernel, function, flags, original, kw, eps=0.5)
    v = compare(fmt, a, want)
    assert v.ok, v.message


@pytest.mark.parametrize("function", FUNCTIONS)
def test_default_eps(kernel, device, function):
    """Called without eps: 1e-6, LayerNorm 1e-5 (spec §0.2, §3.2). Activations scaled by
    2^-10 (exact): mean squares and variances ~4e-6, where the default eps moves every
    output and the other function's default gives other results."""
    flags, fmt = cases.FUNCTIONS[function]
    kw = cases.norm_inputs(5, 130, device, _gen(), **flags)
    for name in ("residual", "x"):
        if name in kw:
            kw[name] = (kw[name].float() * 2**-10).bfloat16()
    original = {k: v.clone() for k, v in kw.items()}
    got = getattr(kernel, function)(*kw.values())
    want = _reference_checking_residual(kernel, function, flags, original, kw,
                                        eps=_default_eps(function))
    v = compare(fmt, got, want)
    assert v.ok, v.message
    other = 1e-6 if function == "layer_norm_bf16" else 1e-5
    assert not compare(fmt, got, getattr(reference_of(kernel), function)(
        *original.values(), eps=other)).ok


def test_compile_fullgraph_no_recompile_across_row_counts(kernel, device):
    """One dynamic graph serves every row count; compiled == eager bit for bit
    (the in-place residual included)."""
    backend = "inductor" if device.type == "cuda" else "aot_eager"
    dim = 64

    def fn(residual, x, weight, bias, scale):
        a = kernel.rms_norm_bf16(x, weight)
        b = kernel.rms_norm_quant_fp8_static_bf16(x, weight, scale)
        c = kernel.layer_norm_bf16(x, weight, bias)
        d = kernel.residual_add_rms_norm_bf16(residual, x, weight)
        e = kernel.residual_add_rms_norm_quant_fp8_static_bf16(residual, a, weight, scale)
        return a, b, c, d, e, residual

    def inputs(rows):
        kw = cases.norm_inputs(rows, dim, device, _gen(rows), residual=True, quant=True,
                               bias=True)
        return kw["residual"], kw["x"], kw["weight"], kw["bias"], kw["scale"]

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend=backend)
    compiled(*inputs(7))  # first call compiles
    with torch._dynamo.config.patch(error_on_recompile=True):
        for rows in (5, 19, 33):
            args = inputs(rows)
            args2 = [t.clone() for t in args]
            for got, want in zip(compiled(*args), fn(*args2)):
                assert torch.equal(_bits(got), _bits(want))


@pytest.mark.gpu
def test_cuda_graph_replay_matches_eager(kernel):
    """Capture all five with every buffer passed; replay on new data is bitwise eager."""
    device = torch.device("cuda")
    rows, dim = 128, 2048
    kw = cases.norm_inputs(rows, dim, device, _gen(), residual=True, quant=True, bias=True)
    outs = {f: torch.empty(rows, dim, dtype=_out_dtype(f), device=device) for f in FUNCTIONS}

    def step():
        kernel.rms_norm_bf16(kw["x"], kw["weight"], 1e-6, outs["rms_norm_bf16"])
        kernel.rms_norm_quant_fp8_static_bf16(kw["x"], kw["weight"], kw["scale"], 1e-6,
                                              outs["rms_norm_quant_fp8_static_bf16"])
        kernel.layer_norm_bf16(kw["x"], kw["weight"], kw["bias"], 1e-5, outs["layer_norm_bf16"])
        kernel.residual_add_rms_norm_bf16(kw["residual"], kw["x"], kw["weight"], 1e-6,
                                          outs["residual_add_rms_norm_bf16"])
        kernel.residual_add_rms_norm_quant_fp8_static_bf16(
            kw["residual"], kw["x"], kw["weight"], kw["scale"], 1e-6,
            outs["residual_add_rms_norm_quant_fp8_static_bf16"])

    step()  # warm up (Triton JIT) outside capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    fresh = cases.norm_inputs(rows, dim, device, _gen(7), residual=True, quant=True, bias=True,
                              scale=0.05)
    for name in kw:
        kw[name].copy_(fresh[name])
    graph.replay()
    torch.cuda.synchronize()
    got = {f: _bits(o) for f, o in outs.items()}
    residual_after = _bits(kw["residual"])
    for name in kw:  # eager on the same data
        kw[name].copy_(fresh[name])
    step()
    torch.cuda.synchronize()
    for f, o in outs.items():
        assert torch.equal(got[f], _bits(o)), f
    assert torch.equal(residual_after, _bits(kw["residual"]))
    ref = reference_of(kernel)
    assert compare("bf16", outs["rms_norm_bf16"], ref.rms_norm_bf16(fresh["x"], fresh["weight"])).ok
    assert compare("fp8", outs["rms_norm_quant_fp8_static_bf16"],
                   ref.rms_norm_quant_fp8_static_bf16(fresh["x"], fresh["weight"],
                                                      fresh["scale"])).ok
