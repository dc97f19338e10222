"""Minimal FP8 FFN call with flashrt-fp8-ffn, loaded through `kernels`.

FP8 input -> Linear + bias -> GELU(tanh) -> FP8 -> Linear + bias -> BF16, two
launches (`fp8_gelu_mlp_bf16`), checked against the package's PyTorch reference.

    python examples/minimal_fp8_ffn.py               # GPU: PI0.5 decoder shape (10, 1024->4096->1024)
    python examples/minimal_fp8_ffn.py --m 4 --k 64 --h 128 --n 64   # any machine

Without a GPU the Triton kernels run in Triton's interpreter (slow but exact),
so the default shape shrinks there.
"""

import argparse
import importlib
import math
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
from flashrt_tools.tolerance import compare_gemm  # noqa: E402


def main():
    on_gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=10 if on_gpu else 4)
    p.add_argument("--k", type=int, default=1024 if on_gpu else 64)
    p.add_argument("--h", type=int, default=4096 if on_gpu else 128)
    p.add_argument("--n", type=int, default=1024 if on_gpu else 64)
    args = p.parse_args()
    device = torch.device("cuda" if on_gpu else "cpu")

    pkg = Package("flashrt-fp8-ffn")
    build(pkg, log=lambda *_: None)
    ops = get_local_kernel(pkg.root)  # or get_kernel("flashrt/flashrt-fp8-ffn", version=1)
    reference = importlib.import_module(f"{ops.__name__}.reference")

    M, K, H, N = args.m, args.k, args.h, args.n
    g = torch.Generator().manual_seed(0)
    f8, bf = torch.float8_e4m3fn, torch.bfloat16

    def scale(v):
        return torch.tensor([v], dtype=torch.float32, device=device)

    def codes(shape, spread):  # FP8 codes spread over the E4M3 range
        return (torch.randn(shape, generator=g) * spread).clamp(-448, 448).to(f8).to(device)

    x, sx = codes((M, K), 16), scale(1 / 16)  # real x ~ N(0, 1)
    up, su = codes((H, K), 32), scale(1 / (32 * math.sqrt(K)))
    down, sd = codes((N, H), 32), scale(1 / (32 * math.sqrt(H)))
    up_bias = (0.1 * torch.randn(H, generator=g)).to(bf).to(device)
    down_bias = (0.1 * torch.randn(N, generator=g)).to(bf).to(device)
    sh = scale(1 / 64)  # static (calibrated) scale of the GELU output

    out = ops.fp8_gelu_mlp_bf16(x, up, up_bias, down, down_bias, sx, su, sh, sd)
    want = reference.fp8_gelu_mlp_bf16(x, up, up_bias, down, down_bias, sx, su, sh, sd)
    verdict = compare_gemm(out, want, p99_abs=2.0 ** -7)  # one bf16 ulp at |y| in [1, 2)
    print(f"out {tuple(out.shape)} {out.dtype}: {verdict.message}")
    assert verdict.ok
    print(f"ok on {device} ({'GPU' if on_gpu else 'Triton interpreter'})")


if __name__ == "__main__":
    main()
