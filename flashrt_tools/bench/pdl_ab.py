"""Programmatic dependent launch (PDL) on the memory-bound row and layout kernels, A/B:
the record behind ``_host.dependent_launch`` in flashrt-residual-norm-quant,
flashrt-adaptive-norms, flashrt-vla-residual-gates and flashrt-spatiotemporal-layout.

Per row, three paths — ours with PDL (the package's launch), ours without it (the same
kernel launched plainly) and verified-equal torch.compile of the reference — under two
CUDA-graph patterns over L2-rotated inputs (harness.graph_us):

* ``chain``: the op back to back, as the bench measures it. With PDL each launch overlaps
  the previous call's run; this is the best case.
* ``after_cublas``: each call preceded by a BF16 ``F.linear`` (cuBLAS, 256 x 1024 x 1024),
  the pattern of a norm or gate after a projection of another library;
* ``after_fp8``: each call preceded by flashrt-fp8-ffn's ``fp8_gemm_bf16`` at decode size
  (10 x 1024 -> 1024: launched with PDL, it lets the next kernel launch early), the
  pattern of a FlashRT pipeline.

The patterns report the time per (GEMM + op) pair and the GEMM alone.

PDL and plain launches are checked to give the same bits before timing; compile is
checked against ours within the package tests' tolerance (max |diff| reported).

Run: python -m flashrt_tools.bench.pdl_ab --out DIR [--budget S]
"""

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .harness import environment, graph_us, rotation_sets, same_bits
from ..repo import ROOT, Package, load_file
from ..validation import load_built, reference_of

BF16 = torch.bfloat16
PATHS = ("pdl", "plain", "compile")


def _cases(package):
    return load_file(ROOT / package / "tests" / "cases.py",
                     f"_flashrt_pdl_cases_{package.replace('-', '_')}")


def _randn(shape, gen, dev, scale=1.0):
    return (torch.randn(shape, generator=gen) * scale).to(BF16).to(dev)


def norm_rows(dev):
    """(package, module attribute, op label, shape label, make(gen) -> set, ours, ref)."""
    cases = _cases("flashrt-residual-norm-quant")
    out = []
    for function, shapes in (("rms_norm_bf16", ((10, 1024), (560, 2048), (16384, 4096))),
                             ("residual_add_rms_norm_bf16", ((10, 1024), (41, 1536),
                                                             (512, 2048), (16384, 4096))),
                             ("residual_add_rms_norm_quant_fp8_static_bf16", ((10, 1024),))):
        flags, fmt = cases.FUNCTIONS[function]
        dtype = torch.float8_e4m3fn if fmt == "fp8" else BF16
        names = list(cases.norm_inputs(1, 2, dev, torch.Generator(), **flags))
        for rows, dim in shapes:
            def make(g, rows=rows, dim=dim, flags=flags, dtype=dtype):
                kw = cases.norm_inputs(rows, dim, dev, g, **flags)
                return dict(kw, out=torch.empty(rows, dim, dtype=dtype, device=dev))

            def ours(k, s, function=function, names=names):
                return getattr(k, function)(*(s[n] for n in names), out=s["out"])

            def ref(r, s, function=function, names=names):
                if "residual" in s:  # the in-place update, as ours does it
                    out, rounded = getattr(r, function + "_with_residual")(
                        *(s[n] for n in names))
                    s["residual"].copy_(rounded)
                    return out
                return getattr(r, function)(*(s[n] for n in names))
            out.append(("flashrt-residual-norm-quant", "norms", function, f"{rows}x{dim}",
                        make, ours, ref))
    return out


def gate_rows(dev):
    out = []
    for rows, dim in ((10, 1024), (512, 1152)):
        def make(g, rows=rows, dim=dim):
            return {"residual": _randn((rows, dim), g, dev), "x": _randn((rows, dim), g, dev),
                    "gate": _randn((rows, dim), g, dev),
                    "out": torch.empty(rows, dim, dtype=BF16, device=dev)}
        out.append(("flashrt-vla-residual-gates", "gates", "gate_residual_bf16",
                    f"{rows}x{dim}", make,
                    lambda k, s: k.gate_residual_bf16(s["residual"], s["x"], s["gate"],
                                                      out=s["out"]),
                    lambda r, s: r.gate_residual_bf16(s["residual"], s["x"], s["gate"])))
    return out


def layout_rows(dev):
    out = []
    for shape in ((1, 16, 21, 60, 104), (1, 96, 21, 60, 104)):
        B, C, T, H, W = shape
        label = "x".join(map(str, shape))

        def make(g, shape=shape, B=B, C=C, T=T, H=H, W=W):
            return {"x": _randn(shape, g, dev),
                    "out": torch.empty(B, T * H * W, C, dtype=BF16, device=dev),
                    "bias": _randn((C,), g, dev)}
        out.append(("flashrt-spatiotemporal-layout", "layout", "ncdhw_to_blc_bf16", label, make,
                    lambda k, s: k.ncdhw_to_blc_bf16(s["x"], s["out"]),
                    lambda r, s: r.ncdhw_to_blc_bf16(s["x"])))
        if C == 96:
            out.append(("flashrt-spatiotemporal-layout", "layout", "add_bias_ncdhw_bf16", label,
                        make, lambda k, s: (k.add_bias_ncdhw_bf16(s["x"], s["bias"]), s["x"])[1],
                        lambda r, s: s["x"].add_(s["bias"].view(1, -1, 1, 1, 1))))

    def make_unshuffle(g):
        return {"x": _randn((1, 192, 11, 60, 104), g, dev),
                "out": torch.empty(1, 96, 22, 60, 104, dtype=BF16, device=dev)}
    out.append(("flashrt-spatiotemporal-layout", "layout", "time_unshuffle2_bf16",
                "1x192x11x60x104", make_unshuffle,
                lambda k, s: k.time_unshuffle2_bf16(s["x"], s["out"]),
                lambda r, s: r.time_unshuffle2_bf16(s["x"])))

    def make_cache(g):
        return {"cur": _randn((1, 96, 9, 120, 208), g, dev),
                "prev": _randn((1, 96, 2, 120, 208), g, dev),
                "out": torch.empty(1, 96, 2, 120, 208, dtype=BF16, device=dev)}
    out.append(("flashrt-spatiotemporal-layout", "layout", "update_cache2_ncdhw_bf16",
                "1x96x9x120x208", make_cache,
                lambda k, s: k.update_cache2_ncdhw_bf16(s["cur"], s["prev"], s["out"]),
                lambda r, s: r.update_cache2_ncdhw_bf16(s["cur"], s["prev"])))

    def make_pack(g):
        return {"previous": _randn((1, 96, 2, 60, 104), g, dev),
                "current": _randn((1, 96, 1, 60, 104), g, dev),
                "out": torch.empty(1, 60, 104, 288, dtype=BF16, device=dev)}
    out.append(("flashrt-spatiotemporal-layout", "layout", "pack_causal_cache3_nhwc_bf16",
                "B=1,C=96,H=60,W=104", make_pack,
                lambda k, s: k.pack_causal_cache3_nhwc_bf16(s["previous"], s["current"],
                                                            s["out"]),
                lambda r, s: r.pack_causal_cache3_nhwc_bf16(s["previous"], s["current"])))

    def make_im2col(g):
        return {"x": _randn((2, 224, 224, 3), g, dev),
                "out": torch.empty(512, 588, dtype=BF16, device=dev)}
    out.append(("flashrt-spatiotemporal-layout", "layout", "patch_im2col_bf16", "NV=2",
                make_im2col, lambda k, s: k.patch_im2col_bf16(s["x"], s["out"]),
                lambda r, s: r.patch_im2col_bf16(s["x"])))
    return out


@contextlib.contextmanager
def plain_launch(module):
    """The module's kernels launched without PDL (its ``dependent_launch`` replaced)."""
    saved = module.dependent_launch
    module.dependent_launch = lambda device: {"PDL": False}
    try:
        yield
    finally:
        module.dependent_launch = saved


def _first(y):
    return y[0] if isinstance(y, (tuple, list)) else y


def measure(kernel, reference, module, make, ours, ref, predecessors):
    first = make(torch.Generator().manual_seed(0))
    nbytes = sum(t.numel() * t.element_size() for t in first.values())
    sets = [first] + [make(torch.Generator().manual_seed(i))
                      for i in range(1, rotation_sets(nbytes))]
    # same bits with and without PDL, on fresh copies of one set (in-place ops mutate it)
    fresh = lambda: {k: v.clone() for k, v in first.items()}  # noqa: E731
    a = _first(ours(kernel, fresh())).clone()
    with plain_launch(module):
        b = _first(ours(kernel, fresh())).clone()
    compiled = torch.compile(lambda s: ref(reference, s), fullgraph=True)
    c = _first(compiled(fresh()))
    diff = (a.float() - c.float()).abs().max().item()
    row = {"same_bits_pdl_plain": same_bits(a, b), "max_abs_vs_compile": diff,
           "bytes": nbytes}

    def timed(name, call):
        """graph_us of ``call`` on path ``name``: ours with PDL, ours plain, compile."""
        op = compiled if name == "compile" else (lambda s: ours(kernel, s))
        with plain_launch(module) if name == "plain" else contextlib.nullcontext():
            return graph_us(lambda s: call(op, s), sets)

    for name in PATHS:
        row[f"{name}_chain_us"] = timed(name, lambda op, s: op(s))
    for pattern, gemm in predecessors.items():
        row[f"{pattern}_gemm_us"] = graph_us(lambda s: gemm(), sets)
        for name in PATHS:
            row[f"{name}_{pattern}_us"] = timed(
                name, lambda op, s, gemm=gemm: (gemm(), op(s))[1])
    del sets, first
    torch.cuda.empty_cache()
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=600.0)
    args = ap.parse_args()
    import torch._inductor.config as inductor_config
    inductor_config.emulate_precision_casts = True  # compile keeps the bf16 residual rounding
    dev = torch.device("cuda")
    t0 = time.time()
    record = {"environment": environment(), "method": __doc__, "rows": []}
    kernels = {}
    gx = torch.randn(256, 1024, device=dev, dtype=BF16)
    gw = torch.randn(1024, 1024, device=dev, dtype=BF16)
    fp8 = load_built(Package("flashrt-fp8-ffn"))
    qx = (torch.randn(10, 1024, device=dev) * 4).to(torch.float8_e4m3fn)
    qw = (torch.randn(1024, 1024, device=dev) * 4).to(torch.float8_e4m3fn)
    qs = torch.tensor([0.05], device=dev)
    qo = torch.empty(10, 1024, device=dev, dtype=BF16)
    predecessors = {"after_cublas": lambda: F.linear(gx, gw),
                    "after_fp8": lambda: fp8.fp8_gemm_bf16(qx, qw, qs, qs, out=qo)}
    for package, attr, op, shape, make, ours, ref in (norm_rows(dev) + gate_rows(dev)
                                                      + layout_rows(dev)):
        if time.time() - t0 > args.budget:
            print(f"budget reached before {op} {shape}")
            break
        if package not in kernels:
            k = load_built(Package(package))
            kernels[package] = (k, reference_of(k))
        kernel, reference = kernels[package]
        torch._dynamo.reset()
        row = dict(package=package, op=op, shape=shape,
                   **measure(kernel, reference, getattr(kernel, attr), make, ours, ref,
                                predecessors))
        record["rows"].append(row)
        line = f"{op} {shape}:"
        for pattern in ("chain", "after_cublas", "after_fp8"):
            alone = f" ({row[pattern + '_gemm_us']:.2f})" if pattern != "chain" else ""
            line += f" | {pattern}{alone} " + " ".join(
                f"{name} {row[f'{name}_{pattern}_us']:.2f}" for name in PATHS)
        print(line + f" | bits {row['same_bits_pdl_plain']} diff {row['max_abs_vs_compile']:.3g}",
              flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "pdl_ab.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
