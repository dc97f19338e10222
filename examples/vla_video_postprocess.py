"""Wan-style attention post-process with flashrt-vla-video, loaded through `kernels`.

Packed QKV (B, T, 3*D) -> Q/K RMSNorm over the whole hidden D -> interleaved
RoPE, in one launch; compared with the PyTorch reference shipped in the package.

    python examples/vla_video_postprocess.py            # GPU: Wan2.2 TI2V-5B shape
    python examples/vla_video_postprocess.py --tokens 16 # any machine

Without a GPU the Triton kernels run in Triton's interpreter (slow but exact),
so the default shape shrinks to 16 tokens there.
"""

import argparse
import importlib
import os
import sys
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

from kernels import get_local_kernel  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from flashrt_tools.build import build  # noqa: E402
from flashrt_tools.repo import Package  # noqa: E402
from flashrt_tools.tolerance import compare_bf16  # noqa: E402


def main():
    on_gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2520 if on_gpu else 16)
    p.add_argument("--heads", type=int, default=24)
    p.add_argument("--head-dim", type=int, default=128)
    args = p.parse_args()
    device = torch.device("cuda" if on_gpu else "cpu")

    pkg = Package("flashrt-vla-video")
    build(pkg, log=lambda *_: None)  # build/torch-<backend>/, the kernels layout
    ops = get_local_kernel(pkg.root)  # or get_kernel("flashrt/flashrt-vla-video", version=1)
    reference = importlib.import_module(f"{ops.__name__}.reference")

    T, H, hd = args.tokens, args.heads, args.head_dim
    D = H * hd
    g = torch.Generator().manual_seed(0)
    packed = (torch.randn(1, T, 3 * D, generator=g) * 2).to(torch.bfloat16).to(device)
    wq = (1 + 0.1 * torch.randn(D, generator=g)).to(torch.bfloat16).to(device)
    wk = (1 + 0.1 * torch.randn(D, generator=g)).to(torch.bfloat16).to(device)
    inv_freq = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    angles = (torch.arange(T, dtype=torch.float64)[:, None] * inv_freq).float()
    freqs_re, freqs_im = angles.cos().to(device), angles.sin().to(device)

    q, k = ops.qkv_split_norm_rope_bf16(packed, wq, wk, freqs_re, freqs_im, heads=H, head_dim=hd)
    q_ref, k_ref = reference.qkv_split_norm_rope_bf16(packed, wq, wk, freqs_re, freqs_im,
                                                      heads=H, head_dim=hd)
    for name, got, want in (("q", q, q_ref), ("k", k, k_ref)):
        verdict = compare_bf16(got, want)  # within 1 bf16 ulp of the fp32 reference
        print(f"{name}: shape {tuple(got.shape)} {verdict.message}")
        assert verdict.ok, f"{name} differs from the reference"

    if on_gpu:
        q_out, k_out = torch.empty_like(q), torch.empty_like(k)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for fn, label in ((lambda: ops.qkv_split_norm_rope_bf16(
                packed, wq, wk, freqs_re, freqs_im, heads=H, head_dim=hd, q_out=q_out,
                k_out=k_out), "flashrt (Python call)"),
                (lambda: reference.qkv_split_norm_rope_bf16(
                    packed, wq, wk, freqs_re, freqs_im, heads=H, head_dim=hd), "PyTorch eager")):
            for _ in range(10):
                fn()
            start.record()
            for _ in range(100):
                fn()
            end.record()
            end.synchronize()
            print(f"{label:24s} {start.elapsed_time(end) * 10:.1f} us per call (host loop)")
    print(f"ok on {device} ({'GPU' if on_gpu else 'Triton interpreter'})")


if __name__ == "__main__":
    main()
