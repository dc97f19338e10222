"""Input builders and the accuracy sweep of flashrt-fused-quant.

Byte-exact packed codes and swizzled scales. Rows around the 128-row
super-tile (1, 31, 32, 33, 127, 128, 129), block counts not a multiple of 4.
Data: random normal gate (x2) and up, so blocks span sign changes, zero-code
values, saturation and subnormal scales; one case of tiny values (scales in
UE4M3's subnormal range) and one with zeros mixed in (scale 0, -0.0 codes).
"""

import torch

from flashrt_tools.validation import Case, device_for_run


def split_inputs(rows, cols, device, gen, scale=1.0, zero_frac=0.0):
    gate = torch.randn(rows, cols, generator=gen) * 2.0 * scale
    up = torch.randn(rows, cols, generator=gen) * scale
    if zero_frac:
        up[torch.rand(rows, cols, generator=gen) < zero_frac] = 0.0
        up[:, :16] = 0.0  # one whole block of zeros: scale byte 0
    return {"gate": gate.to(torch.bfloat16).to(device), "up": up.to(torch.bfloat16).to(device)}


def merged_input(rows, cols, device, gen, scale=1.0):
    kw = split_inputs(rows, cols, device, gen, scale)
    return torch.cat([kw["gate"], kw["up"]], dim=1).contiguous()


def _split_case(rows, cols, scale=1.0, zero_frac=0.0, tag=""):
    def make(device, gen):
        return (), split_inputs(rows, cols, device, gen, scale, zero_frac)

    return Case("silu_mul_quant_nvfp4_swizzled_bf16", f"R={rows},C={cols}{tag}", make,
                ("exact", "exact"))


def _merged_case(rows, cols):
    def make(device, gen):
        return (merged_input(rows, cols, device, gen),), {}

    return Case("silu_mul_merged_quant_nvfp4_swizzled_bf16", f"R={rows},C={cols}", make,
                ("exact", "exact"))


def _sweep(on_gpu):
    split = [(1, 16), (3, 64), (33, 128), (31, 80), (32, 48), (127, 32), (128, 16), (129, 48),
             (2, 4096)]
    merged = [(4, 64), (1, 16), (33, 80), (129, 32)]
    cases = [_split_case(r, c) for r, c in split] + [_merged_case(r, c) for r, c in merged]
    cases += [_split_case(5, 96, scale=0.02, tag=",tiny"),
              _split_case(9, 64, zero_frac=0.3, tag=",zeros"),
              _split_case(3, 64, scale=30.0, tag=",large")]
    if on_gpu:  # PI0.5 / GROOT FFN shapes (spec §6.1 grid)
        for rows in (1, 8, 16, 64, 256, 1024, 2520):
            for cols in (4096, 8192, 12288, 16384):
                if rows * cols <= 2520 * 12288:
                    cases.append(_split_case(rows, cols))
                    cases.append(_merged_case(rows, cols))
    cases += [Case("nvfp4_swizzled_scale_bytes", f"rows={r},cols={c}",
                   lambda device, gen, r=r, c=c: ((r, c), {}), ("exact",))
              for r, c in [(1, 4096), (129, 4096), (16, 12288)]]
    return cases


CASES = _sweep(on_gpu=device_for_run().type == "cuda")
