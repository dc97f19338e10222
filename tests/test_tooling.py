"""The repository tooling: build layout, unique ids, the check gate, loading
paths of `kernels`, and the tolerance helpers (that they fail when they must)."""

import functools
import json
import os
import re
import shutil
import subprocess

import pytest
import torch

from flashrt_tools import build as build_mod
from flashrt_tools.check import check, check_package
from flashrt_tools.repo import ROOT, Package
from flashrt_tools.sync import sync
from flashrt_tools.tolerance import (compare_bf16, compare_exact, compare_fp8, compare_fp16,
                                     compare_gemm)

PKG = "flashrt-vla-video"


@pytest.fixture
def pkg_copy(tmp_path):
    shutil.copytree(ROOT / PKG, tmp_path / PKG, ignore=shutil.ignore_patterns("build", "__pycache__"))
    return Package(PKG, base=tmp_path)


def test_build_writes_kernels_noarch_layout(pkg_copy):
    from kernels._rust import Metadata

    variants = build_mod.build(pkg_copy, log=lambda *_: None)
    assert set(variants) == {"cuda", "cpu"}
    for backend, out in variants.items():
        files = {p.name for p in out.iterdir()}
        assert {"__init__.py", "_ops.py", "metadata.json", "reference.py"} <= files
        meta = json.loads((out / "metadata.json").read_text())
        assert re.fullmatch(rf"_flashrt_vla_video_{backend}_[0-9a-f]{{7}}(_dirty)?", meta["id"])
        assert meta["version"] == 1 and meta["backend"] == {"type": backend}
        Metadata.read_from_file(str(out / "metadata.json"))  # the loader's own parser
        uid = meta["id"].split(f"_{backend}_", 1)[1]
        assert f'_OPS_NAME = f"_flashrt_vla_video_{{get_backend()}}_{uid}"' in (out / "_ops.py").read_text()


def test_unique_id_follows_source_content(pkg_copy):
    before = build_mod.unique_id(pkg_copy)
    (pkg_copy.source / "reference.py").write_text((pkg_copy.source / "reference.py").read_text() + "\n")
    assert build_mod.unique_id(pkg_copy) != before


def test_tree_id_equals_git_for_committed_source():
    pkg = Package(PKG)
    rel = pkg.source.relative_to(ROOT).as_posix()
    try:
        committed = subprocess.run(["git", "rev-parse", f"HEAD:{rel}"], cwd=ROOT,
                                   capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", rel], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout with this package committed")
    if dirty:
        pytest.skip("package source has uncommitted changes")
    assert build_mod.git_tree_id(pkg.source) == committed


def test_check_passes_on_the_repository():
    assert check(log=lambda *_: None) == 0


@pytest.mark.parametrize("breakage,expected", [
    ("drop_export", "__all__ differs from the spec"),
    ("edit_helper", "_helpers.py differs from common/"),
    ("unprefixed_op", "must take add_op_namespace_prefix"),
    ("foreign_import", "imports 'numpy'"),
    ("absolute_self_import", "imports 'flashrt_vla_video'"),
    ("no_card", "missing CARD.md"),
    ("bad_build_toml", "build.toml rejected by the kernels parser"),
])
def test_check_reports_each_breakage(pkg_copy, breakage, expected):
    src = pkg_copy.source
    if breakage == "drop_export":
        init = src / "__init__.py"
        init.write_text(init.read_text().replace('"q_norm_rope_bf16", ', ""))
    elif breakage == "edit_helper":
        (src / "_helpers.py").write_text((src / "_helpers.py").read_text() + "# edited\n")
    elif breakage == "unprefixed_op":
        (src / "extra.py").write_text(
            "import torch\n@torch.library.custom_op('x::y', mutates_args=())\ndef f(a: torch.Tensor) -> None:\n    pass\n")
    elif breakage == "foreign_import":
        (src / "extra.py").write_text("import numpy\n")
    elif breakage == "absolute_self_import":
        (src / "extra.py").write_text("from flashrt_vla_video import reference\n")
    elif breakage == "no_card":
        (pkg_copy.root / "CARD.md").unlink()
    elif breakage == "bad_build_toml":
        toml = pkg_copy.root / "build.toml"
        toml.write_text(toml.read_text().replace('backends = ["cuda", "cpu"]', 'backends = ["triton"]'))
    problems = check_package(pkg_copy)
    assert any(expected in p for p in problems), problems


def test_sync_restores_helper_copies(pkg_copy):
    (pkg_copy.source / "_host.py").write_text("# stale\n")
    assert sync([pkg_copy], log=lambda *_: None) == 1
    assert not any("_host.py" in p for p in check_package(pkg_copy))


def test_local_kernels_env_and_get_kernel(pkg_copy, monkeypatch):
    """`LOCAL_KERNELS` + `get_kernel(..., version=1)` resolves to our build, offline."""
    import kernels

    build_mod.build(pkg_copy, log=lambda *_: None)
    monkeypatch.setenv("LOCAL_KERNELS", f"flashrt/{PKG}={pkg_copy.root}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    k = kernels.get_kernel(f"flashrt/{PKG}", version=1)
    assert sorted(k.__all__) == sorted(["q_norm_rope_bf16", "k_norm_rope_v_cache_bf16",
                                        "qkv_split_norm_rope_bf16"])


# --- tolerance helpers must fail when they should ---------------------------------------------


def _bf16(values):
    return torch.tensor(values, dtype=torch.bfloat16)


def test_compare_bf16_allows_one_ulp_not_two():
    ref = _bf16([1.0, -3.0, 100.0])
    one = (ref.view(torch.int16) + torch.tensor([1, 0, -1], dtype=torch.int16)).view(torch.bfloat16)
    two = (ref.view(torch.int16) + torch.tensor([0, 2, 0], dtype=torch.int16)).view(torch.bfloat16)
    assert compare_bf16(one, ref).ok
    assert not compare_bf16(two, ref).ok
    assert not compare_bf16(_bf16([1.0, float("nan"), 100.0]), ref).ok
    assert not compare_bf16(ref.float(), ref).ok  # wrong dtype


def test_compare_fp16_allows_one_ulp_not_two():
    ref = torch.tensor([1.0, -3.0, 100.0], dtype=torch.float16)
    one = (ref.view(torch.int16) + torch.tensor([1, 0, -1], dtype=torch.int16)).view(torch.float16)
    two = (ref.view(torch.int16) + torch.tensor([0, 2, 0], dtype=torch.int16)).view(torch.float16)
    assert compare_fp16(one, ref).ok
    assert not compare_fp16(two, ref).ok
    assert not compare_fp16(ref.to(torch.bfloat16), ref).ok  # wrong dtype


def test_compare_bf16_sign_crossing_counts_ulps_through_zero():
    tiny = torch.tensor([2.0 ** -100], dtype=torch.bfloat16)
    assert not compare_bf16(-tiny, tiny, atol=0.0).ok  # far apart in ulps
    assert compare_bf16(-tiny, tiny).ok  # within atol: fp32 cancellation near zero


def test_compare_fp8_bounds_one_step_rate_and_rejects_far_codes():
    ref = torch.linspace(-400, 400, 1000).to(torch.float8_e4m3fn)
    codes = ref.view(torch.uint8).clone()
    codes[10] += 1  # one step away
    assert compare_fp8(codes.view(torch.float8_e4m3fn), ref, max_step_rate=1e-3).ok
    codes[20] += 1
    codes[30] += 1
    assert not compare_fp8(codes.view(torch.float8_e4m3fn), ref, max_step_rate=1e-3).ok
    far = ref.view(torch.uint8).clone()
    far[5] += 3
    assert not compare_fp8(far.view(torch.float8_e4m3fn), ref).ok


def test_compare_exact_is_bitwise():
    a = torch.randn(64).to(torch.bfloat16)
    b = a.clone()
    assert compare_exact(a, b).ok
    b.view(torch.int16)[3] ^= 1
    assert not compare_exact(a, b).ok


def test_compare_gemm_p99_on_large_outputs():
    """p99 works past torch.quantile's 16M-element limit and catches a shifted output."""
    ref = torch.randn(17_000_000, generator=torch.Generator().manual_seed(0))
    noisy = ref + 1e-3 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    assert compare_gemm(noisy, ref, p99_abs=5e-3).ok
    assert not compare_gemm(noisy + 0.01, ref, p99_abs=5e-3).ok


def test_stack_gate_checks_every_layer():
    """The FFN-stack benchmark gate (flashrt_tools/bench/fp8_ffn.py) verifies each
    layer on its own input and names the first layer that fails."""
    from flashrt_tools.bench.fp8_ffn import _first_failure

    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(8, 8, generator=gen) for _ in range(3)]
    inputs = [torch.randn(4, 8, generator=gen).to(torch.bfloat16) for _ in weights]

    def reference(i, x):
        return (x.float() @ weights[i].t()).to(torch.bfloat16)

    def wrong_last_layer(i, x):
        y = reference(i, x)
        return y * 1.25 if i == 2 else y

    tol = {"p99_abs": 2.0 ** -5}
    assert _first_failure(reference, reference, inputs, tol) is None
    assert _first_failure(wrong_last_layer, reference, inputs, tol).startswith("layer 2:")


def test_bench_merge_replaces_remeasured_rows_in_place():
    """`flashrt bench --only`: re-measured rows replace their earlier versions in
    place, other rows and notes are kept, rows new to the run are appended."""
    from flashrt_tools.bench import harness
    from flashrt_tools.bench.run import merge_notes, merge_rows

    old = [{"op": "a", "shape": "M=1", "ours_us": 1.0}, {"op": "b", "shape": "M=1", "ours_us": 2.0},
           {"op": "b", "shape": "M=16", "ours_us": 4.0}]
    new = [{"op": "b", "shape": "M=1", "ours_us": 1.5}, {"op": "c", "shape": "M=4", "ours_us": 3.0}]
    merged = merge_rows(old, new)
    assert [(r["op"], r["ours_us"]) for r in merged] == [("a", 1.0), ("b", 1.5), ("b", 4.0),
                                                         ("c", 3.0)]
    # notes in row order (as a full run writes them); "b M=1" does not claim "b M=16"'s note
    notes = merge_notes(["a M=1: met", "b M=1: MISSED x", "b M=16 (model): met"],
                        ["b M=1: met", "c M=4: met"], new, merged)
    assert notes == ["a M=1: met", "b M=1: met", "b M=16 (model): met", "c M=4: met"]

    harness.select_rows(["b M=", "c"])
    try:
        assert harness.skipped_row("a", "M=1") == {"op": "a", "shape": "M=1", "skipped": True}
        assert harness.skipped_row("b", "M=1") is None and harness.skipped_row("c", "M=4") is None
    finally:
        harness.select_rows(None)
    assert harness.skipped_row("a", "M=1") is None


def test_bench_budget_skips_later_rows():
    """flashrt bench --budget: rows reached after the deadline are skipped and listed."""
    from flashrt_tools.bench import harness
    out = harness.set_deadline(3600)
    try:
        assert harness.skipped_row("a", "M=1") is None and out == []
        out = harness.set_deadline(-1)  # already past
        assert harness.skipped_row("a", "M=1") == {"op": "a", "shape": "M=1", "skipped": True}
        assert harness.skipped_row("b", "M=4")["skipped"] and out == ["a M=1", "b M=4"]
    finally:
        harness.set_deadline(None)
    assert harness.skipped_row("a", "M=1") is None


def test_run_case_gives_an_in_place_function_fresh_inputs():
    """Case(mutates=True): the kernel and the reference each get their own copy of the
    tensor arguments, so the reference still sees the original data."""
    import types

    from flashrt_tools.validation import Case, run_case

    def add_one_in_place(x):
        return x.add_(1.0)

    kernel = types.SimpleNamespace(f=add_one_in_place)
    reference = types.SimpleNamespace(f=lambda x: x + 1.0)

    def make(device, gen):
        return (torch.randn(8, generator=gen).to(torch.bfloat16),), {}

    fresh = Case("f", "in place", make, ("exact",), mutates=True)
    shared = Case("f", "in place", make, ("exact",))
    assert all(v.ok for v in run_case(kernel, reference, fresh, torch.device("cpu"))[0])
    assert not all(v.ok for v in run_case(kernel, reference, shared, torch.device("cpu"))[0])


@pytest.mark.parametrize("bench_file", sorted(ROOT.glob("flashrt-*/benchmarks/bench_*.py")),
                         ids=lambda p: p.parent.parent.name)
def test_benchmark_modules_import_and_reproduce_their_recorded_notes(bench_file):
    """Benchmarks only run on a GPU; on CPU, each module must still import (its cases
    and helpers exist) and turn its recorded rows back into its recorded target notes."""
    import json

    from flashrt_tools.repo import load_file

    module = load_file(bench_file, f"_test_bench_{bench_file.parent.parent.name}")
    assert callable(module.benchmark)
    records = sorted((ROOT / "results").glob(f"*/{bench_file.parent.parent.name}.json"))
    for path in records:
        record = json.loads(path.read_text())
        if hasattr(module, "target_notes"):
            assert module.target_notes(record["rows"]) == record["target_notes"], path


def test_results_markdown_lists_rows_cut_by_the_budget():
    """A record written after `flashrt bench --budget` cut rows says which in RESULTS.md;
    a complete record has no such line."""
    import json

    from flashrt_tools.bench.report import render_markdown
    from flashrt_tools.repo import RESULTS

    rec = json.loads((RESULTS / "nvidia-h200" / "flashrt-nvfp4.json").read_text())
    assert "not measured in this run" not in render_markdown("flashrt-nvfp4", [rec])
    rec["not_measured"] = ["nvfp4_sf_linear_to_swizzled rows=2520,D=16384"]
    md = render_markdown("flashrt-nvfp4", [rec])
    assert "not measured in this run" in md and "rows=2520,D=16384" in md


_OFFLINE_PROBE = """
import json, triton, triton.language as tl
from flashrt_tools.offline import compile_sm90, resources

@triton.jit
def copy(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + o, tl.load(x_ptr + o, mask=o < n) * 2.0, mask=o < n)

sig = {"x_ptr": "*fp32", "y_ptr": "*fp32", "n": "i32"}
print(json.dumps([resources(compile_sm90(copy, sig, {"BLOCK": b}, num_warps=1, aligned=(0, 1)))
                  for b in (128, 2048)]))
"""


def test_offline_sm90_resources_need_no_gpu(tmp_path):
    """flashrt_tools.offline compiles for sm_90 with the Triton wheel's ptxas on any
    machine (in a process outside the interpreter this run may use): a copy kernel's
    registers grow with the elements a thread holds, and its SASS has the global loads
    and stores it must have."""
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    probe = tmp_path / "probe.py"  # a file: @triton.jit reads the kernel's source
    probe.write_text(_OFFLINE_PROBE)
    run = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    small, large = json.loads(run.stdout.splitlines()[-1])
    assert 0 < small["regs"] < large["regs"] and small["local_bytes"] == 0
    assert small["opcodes"]["LDG"] >= 1 and small["opcodes"]["STG"] >= 1
    assert large["sass"] > small["sass"]


def test_offline_compile_refuses_an_interpreted_kernel():
    import triton
    import triton.language as tl

    from flashrt_tools.offline import compile_sm90

    @triton.jit
    def k(x_ptr, BLOCK: tl.constexpr):
        tl.store(x_ptr + tl.arange(0, BLOCK), 1.0)

    if isinstance(k, triton.runtime.jit.JITFunction):  # a GPU run: not interpreted
        return
    with pytest.raises(TypeError, match="not a compilable"):
        compile_sm90(k, {"x_ptr": "*fp32"}, {"BLOCK": 16})


# --- the out-variant op checks of flashrt_tools.validation fail when they must -------------

@functools.lru_cache(maxsize=None)  # an op name registers once per process
def _toy_ops():
    """Two toy out-variant ops, out = 2x: one whose fake checks out's shape, one whose fake
    does not."""
    def make(name, check):
        @torch.library.custom_op(f"flashrt_tooling_test::{name}", mutates_args=("out",))
        def op(x: torch.Tensor, out: torch.Tensor) -> None:
            out.copy_(2 * x)

        @op.register_fake
        def _(x, out):
            if check and out.shape != x.shape:
                raise RuntimeError("out must have the shape of x")
        return getattr(torch.ops.flashrt_tooling_test, name)
    return make("double_checked", True), make("double_unchecked", False)


def _nan_like(shape, dtype, device):
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def test_op_checks_pass_and_fail_when_they_must():
    from flashrt_tools.validation import (assert_fake_rejects_wrong_output_shapes,
                                          assert_op_equals_wrapper, written_args)

    checked, unchecked = _toy_ops()
    assert written_args(checked) == [1]
    args = (torch.randn(3, 5), torch.empty(3, 5))
    same = lambda a, b: torch.equal(a, b)  # noqa: E731
    assert_op_equals_wrapper(checked, lambda x, out: out.copy_(2 * x), args, _nan_like, same)
    with pytest.raises(AssertionError, match="out"):
        assert_op_equals_wrapper(checked, lambda x, out: out.copy_(3 * x), args, _nan_like, same)
    assert_fake_rejects_wrong_output_shapes(checked, args)
    with pytest.raises(AssertionError, match="accepted"):
        assert_fake_rejects_wrong_output_shapes(unchecked, args)
    with pytest.raises(AssertionError):  # a different message than the one asked for
        assert_fake_rejects_wrong_output_shapes(checked, args, match="must be even")
