"""flashrt-nvfp4 on model shapes: linear -> swizzled scale layout.

Grid: rows in {1, 16, 129, 1024, 2520} x D in {4096, 12288, 16384}. Byte model:
read rows*D/16 scale bytes, write the same (padding untouched). Baselines:
eager reference.py (index scatter) and torch.compile of it (verified); no
library implements this layout op. Launch-bound at every shape.

Run: ``flashrt bench nvfp4`` on a GPU.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench.harness import measure_row, reject_note, rotation_sets  # noqa: E402
from flashrt_tools.repo import ROOT, load_file  # noqa: E402

cases = load_file(ROOT / "flashrt-nvfp4" / "tests" / "cases.py", "_flashrt_cases_flashrt_nvfp4")

ROWS = (1, 16, 129, 1024, 2520)
DIMS = (4096, 12288, 16384)


def benchmark(ctx):
    device = torch.device("cuda")
    rows_out = []
    for rows in ((1, 1024) if ctx.quick else ROWS):
        for D in DIMS:
            nbytes = 2 * rows * D // 16
            sets = []
            for i in range(rotation_sets(nbytes)):
                s = cases.linear_scales(rows, D, device, torch.Generator().manual_seed(i))
                sets.append((s, torch.zeros(ctx.kernel.nvfp4_sf_swizzled_bytes(rows, D),
                                            dtype=torch.uint8, device=device)))
            rows_out.append(measure_row(
                op="nvfp4_sf_linear_to_swizzled", shape=f"rows={rows},D={D}", model="layout",
                sets=sets, ours=lambda s: ctx.kernel.nvfp4_sf_linear_to_swizzled(s[0], out=s[1]),
                reference=lambda s: ctx.reference.nvfp4_sf_linear_to_swizzled(s[0]),
                formats=("exact",), nbytes=nbytes, copy_gbps=ctx.copy_gbps, log=ctx.log))
    return rows_out


def target_notes(rows):
    notes = []
    for r in rows:
        if r.get("label") == "reject":
            notes.append(reject_note(r))
            continue
        notes.append(f"{r['op']} {r['shape']}: {r['ours_us']:.2f} us, x eager "
                     f"{r['speedup_vs_eager']:.1f}, x compile {r['speedup_vs_compile'] or 0:.2f} "
                     f"(launch-bound; no bandwidth target at < 64 MB)")
    return notes


if __name__ == "__main__":
    from flashrt_tools.bench.run import bench

    sys.exit(bench(["flashrt-nvfp4"], quick="--quick" in sys.argv))
