"""flashrt-fused-quant on PI0.5 / GROOT FFN shapes.

Grid (from spec §6.1, thinned to fit a benchmark run): rows {1, 16, 256, 1024,
2520} x hidden {4096, 12288}, plus 1024 x 16384; split and merged.
Byte model: read gate + up (4 bytes / element), write packed (0.5 byte /
element) and the written scale bytes (1 / 16). Baselines: eager reference.py
and torch.compile of it (verified byte-exact). Target: >= 90% of the copy
ceiling at >= 64 MB traffic.

Run: ``flashrt bench fused-quant`` on a GPU.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench.harness import measure_row, reject_note, rotation_sets  # noqa: E402
from flashrt_tools.repo import ROOT, load_file  # noqa: E402

cases = load_file(ROOT / "flashrt-fused-quant" / "tests" / "cases.py",
                  "_flashrt_cases_flashrt_fused_quant")

ROWS = (1, 16, 256, 1024, 2520)
HIDDEN = (4096, 12288)
EXTRA = ((1024, 16384),)  # large traffic (75 MB)


def benchmark(ctx):
    device = torch.device("cuda")
    out = []
    grid = [(r, c) for r in ROWS for c in HIDDEN] + list(EXTRA)
    if ctx.quick:
        grid = [(r, c) for r, c in grid if r in (1, 2520)]
    for rows, cols in grid:
        nbytes = rows * cols * 4 + rows * cols // 2 + rows * cols // 16
        for merged in (False, True):
            sets = []
            for i in range(rotation_sets(nbytes)):
                g = torch.Generator().manual_seed(i)
                x = (cases.merged_input(rows, cols, device, g) if merged
                     else cases.split_inputs(rows, cols, device, g))
                bufs = (torch.empty(rows, cols // 2, dtype=torch.uint8, device=device),
                        torch.zeros(ctx.kernel.nvfp4_swizzled_scale_bytes(rows, cols),
                                    dtype=torch.uint8, device=device))
                sets.append((x, bufs))
            if merged:
                op = "silu_mul_merged_quant_nvfp4_swizzled_bf16"

                def ours(s):
                    return ctx.kernel.silu_mul_merged_quant_nvfp4_swizzled_bf16(
                        s[0], packed=s[1][0], scales=s[1][1])

                def eager(s):
                    return ctx.reference.silu_mul_merged_quant_nvfp4_swizzled_bf16(s[0])
            else:
                op = "silu_mul_quant_nvfp4_swizzled_bf16"

                def ours(s):
                    return ctx.kernel.silu_mul_quant_nvfp4_swizzled_bf16(
                        **s[0], packed=s[1][0], scales=s[1][1])

                def eager(s):
                    return ctx.reference.silu_mul_quant_nvfp4_swizzled_bf16(**s[0])
            out.append(measure_row(op=op, shape=f"rows={rows},C={cols}", model="PI0.5/GROOT FFN",
                                   sets=sets, ours=ours, reference=eager,
                                   formats=("exact", "exact"), nbytes=nbytes,
                                   copy_gbps=ctx.copy_gbps, log=ctx.log))
            del sets
            torch.cuda.empty_cache()
    return out


def target_notes(rows):
    notes = []
    for r in rows:
        if r.get("label") == "reject":
            notes.append(reject_note(r))
            continue
        checks = [("faster than verified compile", r.get("compile_us") is None
                   or r["ours_us"] < r["compile_us"])]
        if r["bytes"] >= 64e6:
            checks.append(("copy BW >= 90%", (r["pct_copy_bw"] or 0) >= 90))
        missed = [n for n, ok in checks if not ok]
        status = "met" if not missed else "MISSED " + ", ".join(missed)
        vs_compile = (f"x compile {r['speedup_vs_compile']:.2f}" if r.get("speedup_vs_compile")
                      else "compile n/a (does not match eager)")
        same_size = r.get("pct_same_size_copy")
        notes.append(f"{r['op']} {r['shape']}: {status} ({r['ours_us']:.2f} us, "
                     f"{r['pct_copy_bw'] or 0:.0f}% copy BW"
                     + (f", {same_size:.0f}% of a same-size copy" if same_size else "")
                     + f", {vs_compile})")
    return notes


if __name__ == "__main__":
    from flashrt_tools.bench.run import bench

    sys.exit(bench(["flashrt-fused-quant"], quick="--quick" in sys.argv))
