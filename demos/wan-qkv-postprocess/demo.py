"""Wan2.2 self-attention input path: packed QKV -> Q/K RMSNorm + RoPE -> SDPA.

The model-block view of flashrt-vla-video: how much of "packed QKV to attention
output" the fused post-process saves when the same SDPA runs on both paths.

  ours:     qkv_split_norm_rope_bf16 (one launch) -> SDPA
  eager:    reference.py post-process (PyTorch ops) -> SDPA
  compile:  torch.compile of the eager path (verified against eager first)

Shapes: Wan2.2 TI2V-5B (24 heads x 128) and A14B (40 x 128), B = 1,
T in {1024, 2520, 4096}. Timing: CUDA-graph replay (flashrt_tools.bench.harness).
Writes demos/wan-qkv-postprocess/RESULTS.md. GPU only.

    python demos/wan-qkv-postprocess/demo.py
"""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from flashrt_tools.bench import harness  # noqa: E402
from flashrt_tools.repo import ROOT, Package, load_file  # noqa: E402
from flashrt_tools.validation import load_built, reference_of  # noqa: E402

cases = load_file(ROOT / "flashrt-vla-video" / "tests" / "cases.py", "_flashrt_cases_flashrt_vla_video")
MODELS = {"Wan2.2-TI2V-5B": 24, "Wan2.2-A14B": 40}
HD = 128


def attention(q, k, v):
    """(B, T, H, hd) bf16 -> SDPA over heads -> (B, T, H, hd)."""
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return o.transpose(1, 2)


def main():
    if not torch.cuda.is_available():
        raise SystemExit("this demo times GPU kernels; run it on a CUDA machine")
    kernel = load_built(Package("flashrt-vla-video"))
    ref = reference_of(kernel)
    env = harness.environment()
    copy_gbps = harness.copy_bandwidth_gbps()
    rows = []
    for model, H in MODELS.items():
        D = H * HD
        for T in (1024, 2520, 4096):
            sets = []
            for i in range(2):
                kw = cases.qkv_inputs(1, T, H, HD, torch.device("cuda"), torch.Generator().manual_seed(i))
                out = torch.empty(1, T, H, HD, dtype=torch.bfloat16, device="cuda")
                sets.append((kw, out, torch.empty_like(out)))

            def v_of(kw):
                return kw["packed_qkv"][..., 2 * D:].unflatten(-1, (H, HD))

            def ours(s, H=H):
                q, k = kernel.qkv_split_norm_rope_bf16(**s[0], heads=H, head_dim=HD,
                                                       q_out=s[1], k_out=s[2])
                return attention(q, k, v_of(s[0]))

            def eager(s, H=H):
                q, k = ref.qkv_split_norm_rope_bf16(**s[0], heads=H, head_dim=HD)
                return attention(q, k, v_of(s[0]))

            # The attention output of 1-ulp different Q/K is compared as a GEMM-like
            # reduction: p99 absolute error and cosine.
            row = harness.measure_row(op="qkv_postprocess+sdpa", shape=f"B=1,T={T},H={H},hd=128",
                                      model=model, sets=sets, ours=ours, reference=eager,
                                      formats=("gemm",), nbytes=0, copy_gbps=copy_gbps,
                                      compare_kwargs={"gemm": {"p99_abs": 2 ** -7}})
            rows.append(row)
    (HERE / "results.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
    lines = ["# Wan QKV post-process + SDPA (model block)", "",
             f"{env['gpu']}, torch {env['torch']}, triton {env['triton']}, {env['date']}. "
             "GPU time per call under CUDA-graph replay; the same SDPA on every path.", "",
             "| model | shape | ours µs | eager µs | compile µs | ×eager | ×compile | compile status |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("label") == "reject":
            lines.append(f"| {r['model']} | {r['shape']} | reject: {r.get('note')} |||||")
            continue
        comp = f"{r['compile_us']:.1f}" if r.get("compile_us") else "–"
        xc = f"{r['speedup_vs_compile']:.2f}×" if r.get("speedup_vs_compile") else "–"
        lines.append(f"| {r['model']} | {r['shape']} | {r['ours_us']:.1f} | {r['eager_us']:.1f} "
                     f"| {comp} | {r['speedup_vs_eager']:.2f}× | {xc} | {r['compile_status']} |")
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
