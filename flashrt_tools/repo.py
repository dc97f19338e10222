"""Where things are in the repository, and what one package looks like."""

import dataclasses
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMON = ROOT / "common"
RESULTS = ROOT / "results"
BUILD_BACKENDS = ("cuda", "cpu")  # noarch variants written by `flashrt build`


@dataclasses.dataclass(frozen=True)
class Package:
    name: str  # Hub name, e.g. "flashrt-vla-video"
    base: Path = ROOT  # the folder holding the package folder (tests use copies)

    @property
    def python_name(self) -> str:
        return self.name.replace("-", "_")

    @property
    def root(self) -> Path:
        return self.base / self.name

    @property
    def source(self) -> Path:
        return self.root / "torch-ext" / self.python_name

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    def variant_dir(self, backend: str) -> Path:
        return self.build_dir / f"torch-{backend}"


def all_packages():
    """Every package folder present in the repository, sorted by name."""
    return [Package(p.name) for p in sorted(ROOT.glob("flashrt-*")) if p.is_dir()]


def select(names):
    """Packages named on the command line (with or without the flashrt- prefix)."""
    present = {p.name: p for p in all_packages()}
    if not names:
        return list(present.values())
    chosen = []
    for n in names:
        full = n if n.startswith("flashrt-") else f"flashrt-{n}"
        if full not in present:
            raise SystemExit(f"unknown package {n!r}; present: {', '.join(sorted(present))}")
        chosen.append(present[full])
    return chosen


# Shared modules that only some packages carry (packages cannot import each other):
# common/<file> -> the packages `flashrt sync` copies it into.
SHARED_MODULES = {
    "fp8_gemm.py": ("flashrt-fp8-ffn", "flashrt-fp8-swiglu-ffn"),
    "fp8_wgmma.py": ("flashrt-fp8-ffn", "flashrt-fp8-swiglu-ffn"),
    "nvfp4_codec.py": ("flashrt-nvfp4", "flashrt-fused-quant", "flashrt-smallm-gemm"),
    "fp8_reference.py": ("flashrt-fp8-ffn", "flashrt-fp8-swiglu-ffn", "flashrt-gemm-epilogues"),
    "nvfp4_reference.py": ("flashrt-nvfp4", "flashrt-fused-quant", "flashrt-smallm-gemm"),
}


def common_files(package_name=None):
    """The common/ files `flashrt sync` copies into a package: every ``_*.py`` helper,
    plus the SHARED_MODULES that list the package."""
    files = sorted(p for p in COMMON.glob("_*.py"))
    files += [COMMON / f for f, owners in SHARED_MODULES.items() if package_name in owners]
    return files


def load_common(name: str):
    """Import one ``common/`` module (e.g. "_host") as a top-level module."""
    key = f"flashrt_common{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, COMMON / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def load_file(path: Path, key: str):
    """Import a Python file that is not on sys.path (test cases, benchmarks)."""
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module
