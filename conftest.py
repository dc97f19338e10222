"""Root pytest configuration: one run covers every package.

Without a GPU the real Triton kernels run through Triton's interpreter
(TRITON_INTERPRET=1, set here before anything imports triton), with exact
fp32->bf16/fp8 conversions installed (the interpreter's own round wrongly).
"""

from flashrt_tools.validation import ensure_interpreter_if_cpu

INTERPRETING = ensure_interpreter_if_cpu()

import pytest  # noqa: E402
import torch  # noqa: E402

from flashrt_tools.repo import Package, ROOT, load_common  # noqa: E402
from flashrt_tools.validation import device_for_run, load_built  # noqa: E402

if INTERPRETING:
    load_common("_host").install_interpreter_fixes()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none (CPU suite runs the "
                                   "same kernels through the Triton interpreter)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device():
    return device_for_run()


@pytest.fixture
def kernel(request):
    """The package of the requesting test file, freshly built and loaded through `kernels`."""
    path = request.path.resolve()
    for parent in path.parents:
        if parent.parent == ROOT and parent.name.startswith("flashrt-"):
            return load_built(Package(parent.name))
    raise RuntimeError(f"{path} is not inside a flashrt-* package folder")
