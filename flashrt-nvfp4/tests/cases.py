"""Input builders and the accuracy sweep of flashrt-nvfp4.

Rows around the 128x4 super-tile boundaries (1, 31, 32, 33, 127, 128, 129) and
D whose block count is not a multiple of 4 (column padding). Scale bytes are
random over all 256 values (a layout op must not interpret them).
"""

import torch

from flashrt_tools.validation import Case, device_for_run


def linear_scales(rows, D, device, gen):
    return torch.randint(0, 256, (rows, D // 16), generator=gen, dtype=torch.uint8).to(device)


def _case(rows, D, **kw):
    def make(device, gen):
        return (linear_scales(rows, D, device, gen),), dict(kw)

    return Case("nvfp4_sf_linear_to_swizzled", f"rows={rows},D={D}" + ",is_sfb" * bool(kw),
                make, ("exact",))


def _bytes_case(rows, D):
    return Case("nvfp4_sf_swizzled_bytes", f"rows={rows},D={D}",
                lambda device, gen: ((rows, D), {}), ("exact",))


def _sweep(on_gpu):
    shapes = [(1, 1024), (2, 4096), (31, 64), (32, 80), (33, 4096), (127, 48), (128, 16),
              (129, 4096), (16, 12288), (4, 4096)]
    if on_gpu:
        shapes += [(64, 16384), (16, 1024), (16, 2048), (16, 8192), (1000, 4096), (2520, 12288)]
    cases = [_case(r, d) for r, d in shapes] + [_case(33, 208, is_sfb=True)]
    cases += [_bytes_case(1, 4096), _bytes_case(129, 4096), _bytes_case(33, 80)]
    return cases


CASES = _sweep(on_gpu=device_for_run().type == "cuda")
