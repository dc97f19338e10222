"""Replace a torch ``Linear -> GELU(tanh) -> Linear`` FFN by flashrt-fp8-ffn.

The BF16 module's weights are quantized once to FP8 E4M3 (per-tensor scales),
the activation scales are calibrated statically on sample inputs, and every
buffer the FP8 path writes is preallocated, so a call allocates nothing and can
be captured in a CUDA graph. Prints cosine / max-abs against the BF16 module
and, on a GPU, the speedup (host-issued calls and CUDA-graph replay).

    python examples/replace_torch_ffn.py                       # GPU: SigLIP FFN (512, 1152->4304->1152)
    python examples/replace_torch_ffn.py --m 8 --d 64 --h 128  # any machine
"""

import argparse
import os
import sys
from pathlib import Path

import torch
from torch import nn

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

from kernels import get_local_kernel  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from flashrt_tools.build import build  # noqa: E402
from flashrt_tools.repo import Package  # noqa: E402

F8 = torch.float8_e4m3fn


class TorchFFN(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, h), nn.Linear(h, d)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x), approximate="tanh"))


def _scale(amax):
    return (amax.float() / (0.9 * 448)).clamp_min(1e-8).reshape(1)


def _quantize_weight(w):
    s = _scale(w.abs().amax())
    return (w.float() / s).clamp(-448, 448).to(F8), s


class FP8FFN(nn.Module):
    """Inference-only replacement with static scales and preallocated buffers for ``rows``."""

    def __init__(self, ops, ffn, calib_x, rows):
        super().__init__()
        self.ops = ops
        self.up, self.su = _quantize_weight(ffn.fc1.weight.detach())
        self.down, self.sd = _quantize_weight(ffn.fc2.weight.detach())
        self.bu = ffn.fc1.bias.detach().to(torch.bfloat16)
        self.bd = ffn.fc2.bias.detach().to(torch.bfloat16)
        with torch.no_grad():  # static calibration on sample inputs
            self.sx = _scale(calib_x.abs().amax())
            h = ffn.fc1(calib_x).float()
            self.sh = _scale(nn.functional.gelu(h, approximate="tanh").abs().amax())
        d, hdim = ffn.fc1.in_features, ffn.fc1.out_features
        dev = calib_x.device
        self.bufs = (torch.empty(rows, d, dtype=F8, device=dev),
                     torch.empty(rows, hdim, dtype=torch.bfloat16, device=dev),
                     torch.empty(rows, hdim, dtype=F8, device=dev),
                     torch.empty(rows, d, dtype=torch.bfloat16, device=dev))

    def forward(self, x):
        return self.ops.bf16_fp8_gelu_mlp_v2_bf16(x, self.up, self.bu, self.down, self.bd,
                                                  self.sx, self.su, self.sh, self.sd, *self.bufs)


def _time_us(fn, graph=False, n=50):
    fn()
    torch.cuda.synchronize()
    if graph:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(n):
                fn()
        run = g.replay
    else:
        def run():
            for _ in range(n):
                fn()
    run()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / (5 * n)


def main():
    on_gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=512 if on_gpu else 8)
    p.add_argument("--d", type=int, default=1152 if on_gpu else 64)
    p.add_argument("--h", type=int, default=4304 if on_gpu else 128)
    args = p.parse_args()
    device = torch.device("cuda" if on_gpu else "cpu")
    torch.manual_seed(0)

    pkg = Package("flashrt-fp8-ffn")
    build(pkg, log=lambda *_: None)
    ops = get_local_kernel(pkg.root)  # or get_kernel("flashrt/flashrt-fp8-ffn", version=1)

    ffn = TorchFFN(args.d, args.h).to(device=device, dtype=torch.bfloat16).eval()
    calib = torch.randn(4 * args.m, args.d, device=device).to(torch.bfloat16)
    x = torch.randn(args.m, args.d, device=device).to(torch.bfloat16)
    fp8 = FP8FFN(ops, ffn, calib, rows=args.m)

    with torch.no_grad():
        want = ffn(x).float()
        got = fp8(x).float()
    cos = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0).item()
    print(f"FP8 FFN vs BF16 module: cosine {cos:.5f}, max |diff| {(got - want).abs().max():.4f}, "
          f"max |ref| {want.abs().max():.3f}")
    assert cos > 0.99, "FP8 replacement diverges from the BF16 module"

    if on_gpu:
        with torch.no_grad():
            for graph in (False, True):
                t_bf16 = _time_us(lambda: ffn(x), graph)
                t_fp8 = _time_us(lambda: fp8(x), graph)
                how = "CUDA-graph replay" if graph else "host-issued calls"
                print(f"{how:18s}: BF16 module {t_bf16:7.1f} us, FP8 {t_fp8:7.1f} us, "
                      f"speedup {t_bf16 / t_fp8:.2f}x")
    print(f"ok on {device} ({'GPU' if on_gpu else 'Triton interpreter'})")


if __name__ == "__main__":
    main()
