"""flashrt-fp8-ffn on model shapes: FP8 GEMM vs torch._scaled_mm, FP8 GELU-MLP layer stacks.

Grid:
* fp8_gemm_bf16 alone, M in {1, 8, 16, 64, 128, 512, 1024, 4096} at the PI0.5 decoder
  K/N (1024 -> 4096 up, 4096 -> 1024 down), and 8192^3. library = torch._scaled_mm
  (cuBLASLt, B column-major = the [N, K] weight transposed, fp32 scale tensors).
* bf16_fp8_gelu_mlp_bf16 layer stacks, distinct weights per layer, each layer on
  its own calibrated BF16 input (flashrt_tools/bench/fp8_ffn.py says why):
  PI0.5 decoder (M 1 / 10 / 16, 1024->4096->1024) x 18, SigLIP (512,
  1152->4304->1152) x 27, GROOT action DiT (41, 1536->6144->1536) x 32, GROOT ViT
  (1024, 1024->4096->1024) x 24. Baselines: eager fake-quant
  (dequant to fp32, fp32 matmul, the spec's roundings), torch.compile of one layer of
  it (verified, reused by every layer), and the library composition (two
  torch._scaled_mm + PyTorch bias/GELU/quantize epilogues) eager (``library_eager_us``)
  and compiled per layer (``library_us``).

Byte model: GEMM reads A and W once and writes C; a stack reads every layer's
weights once plus its activations. FLOPs: 2*M*N*K per GEMM.
Verification bound and method: flashrt_tools/bench/fp8_ffn.py (shared with
flashrt-fp8-swiglu-ffn).

Run: ``flashrt bench fp8-ffn`` on a GPU.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flashrt_tools.bench.fp8_ffn import (BENCH_TOL, BF16, FP8, GEMM_M, eager_gemm,  # noqa: E402
                                         fp8_weight, gemm_rows, measure_stack, q8,
                                         scaled_mm, scaled_mm_needs_pad,
                                         target_notes)  # target_notes: read by `flashrt bench`

GEMM_KN = {"pi05_decoder up": (1024, 4096), "pi05_decoder down": (4096, 1024)}
STACKS = [("PI0.5 decoder", 10, 1024, 4096, 1024, 18), ("PI0.5 decoder", 1, 1024, 4096, 1024, 18),
          ("PI0.5 decoder", 16, 1024, 4096, 1024, 18), ("PI0.5 SigLIP", 512, 1152, 4304, 1152, 27),
          ("GROOT action DiT", 41, 1536, 6144, 1536, 32), ("GROOT ViT", 1024, 1024, 4096, 1024, 24)]


def _layer_weights(K, H, N, gen):
    up, su = fp8_weight(H, K, gen)
    down, sd = fp8_weight(N, H, gen)
    return {"up_weight": up, "up_bias": (torch.randn(H, generator=gen, device="cuda") * 0.05).to(BF16),
            "down_weight": down, "down_bias": (torch.randn(N, generator=gen, device="cuda") * 0.05).to(BF16),
            "up_weight_scale": su, "down_weight_scale": sd}


def _eager_layer(x, L):
    """The spec's v1 math, eager fake-quant in fp32."""
    xq = q8(x, L["input_scale"])
    h = eager_gemm(xq, L["up_weight"], L["input_scale"], L["up_weight_scale"])
    hq = q8(F.gelu(h.float() + L["up_bias"].float(), approximate="tanh"), L["hidden_scale"])
    y = eager_gemm(hq, L["down_weight"], L["hidden_scale"], L["down_weight_scale"])
    return (y.float() + L["down_bias"].float()).to(BF16)


def _library_layer(x, L):
    """What a user writes from cuBLASLt: _scaled_mm GEMMs + PyTorch epilogues."""
    xq = q8(x, L["input_scale"])
    h = scaled_mm(xq, L["up_weight"], L["input_scale"], L["up_weight_scale"])
    hq = q8(F.gelu(h.float() + L["up_bias"].float(), approximate="tanh"), L["hidden_scale"])
    y = scaled_mm(hq, L["down_weight"], L["hidden_scale"], L["down_weight_scale"])
    return (y.float() + L["down_bias"].float()).to(BF16)


def _stack_rows(ctx):
    rows = []
    stacks = STACKS[:1] + STACKS[3:4] if ctx.quick else STACKS
    for model, M, K, H, N, n_layers in stacks:
        g = torch.Generator(device="cuda").manual_seed(0)
        layers = [_layer_weights(K, H, N, g) for _ in range(n_layers)]
        inputs = [torch.randn((M, K), generator=g, device="cuda").to(BF16) for _ in layers]
        for L, x in zip(layers, inputs):  # static calibration on the layer's own input
            L["input_scale"] = (x.float().abs().amax() / (0.9 * 448)).reshape(1)
            h = eager_gemm(q8(x, L["input_scale"]), L["up_weight"], L["input_scale"],
                            L["up_weight_scale"])
            a = F.gelu(h.float() + L["up_bias"].float(), approximate="tanh")
            L["hidden_scale"] = (a.abs().amax() / (0.9 * 448)).reshape(1)
        bufs = [(torch.empty(M, K, dtype=FP8, device="cuda"), torch.empty(M, H, dtype=BF16, device="cuda"),
                 torch.empty(M, H, dtype=FP8, device="cuda"), torch.empty(M, N, dtype=BF16, device="cuda"))
                for _ in layers]

        def ours(i, x):
            L = layers[i]
            return ctx.kernel.bf16_fp8_gelu_mlp_bf16(
                x, L["up_weight"], L["up_bias"], L["down_weight"], L["down_bias"],
                L["input_scale"], L["up_weight_scale"], L["hidden_scale"],
                L["down_weight_scale"], *bufs[i])

        wbytes = n_layers * (H * K + N * H)
        row = measure_stack(
            op="bf16_fp8_gelu_mlp_bf16 stack", shape=f"M={M},K={K},H={H},N={N},layers={n_layers}",
            model=model, layers=layers, inputs=inputs, ours=ours, reference_layer=_eager_layer,
            library_layer=_library_layer, nbytes=wbytes + n_layers * M * (2 * K + 2 * N),
            weight_bytes=wbytes, flops=n_layers * 2 * M * (K * H + H * N),
            copy_gbps=ctx.copy_gbps, tol=BENCH_TOL["gemm"], log=ctx.log)
        row["library_note"] = ("library_us: torch.compile(per layer) of torch._scaled_mm + "
                               "bias/GELU/quantize epilogues; library_eager_us: the same eager")
        rows.append(row)
        torch.cuda.empty_cache()
    return rows


def benchmark(ctx):
    torch.backends.cuda.matmul.allow_tf32 = False
    pad = scaled_mm_needs_pad()
    grid = [(name, M, K, N) for name, (K, N) in GEMM_KN.items() for M in GEMM_M]
    grid.append(("square 8192", 8192, 8192, 8192))
    return gemm_rows(ctx, grid, pad) + _stack_rows(ctx)


if __name__ == "__main__":
    from flashrt_tools.bench.run import bench

    sys.exit(bench(["flashrt-fp8-ffn"], quick="--quick" in sys.argv))
