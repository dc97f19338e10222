"""`flashrt check`: the structural gate of every package (no imports, no GPU).

Each failure prints one line "<package>: <what is wrong>"; exit status 1 if any.
"""

import ast
import subprocess
import sys

from .repo import ROOT, all_packages
from .spec_api import SPEC_API
from .sync import expected_copies

REQUIRED_FILES = ("build.toml", "CARD.md", "README.md")
# Decorators whose first argument must be add_op_namespace_prefix(...) (the rule
# kernel-builder's torch-ops-check hook enforces).
OP_DECORATORS = {"custom_op", "triton_op", "register_kernel", "register_fake",
                 "register_vmap", "register_torch_dispatch"}
ALLOWED_IMPORTS = {"torch", "triton"} | set(sys.stdlib_module_names)


def _declared_all(init_path):
    tree = ast.parse(init_path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [ast.literal_eval(e) for e in node.value.elts]
    return None


def _decorator_name(dec):
    target = dec.func if isinstance(dec, ast.Call) else dec
    return target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)


def _check_module(path, rel):
    """Op-namespace, import and relative-import rules for one package module."""
    problems = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            for dec in node.decorator_list:
                if _decorator_name(dec) not in OP_DECORATORS:
                    continue
                first = dec.args[0] if isinstance(dec, ast.Call) and dec.args else None
                ok = (isinstance(first, ast.Call)
                      and getattr(first.func, "id", None) == "add_op_namespace_prefix")
                if not ok:
                    problems.append(f"{rel}:{node.lineno}: @{_decorator_name(dec)} must take "
                                    "add_op_namespace_prefix(...) as its first argument")
        if isinstance(node, ast.Import):
            mods = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            mods = [node.module.split(".")[0]]
        else:
            continue
        for m in mods:
            if m not in ALLOWED_IMPORTS:
                problems.append(f"{rel}:{node.lineno}: imports {m!r}; a package may import only "
                                "the standard library, torch, triton and itself (relatively)")
    return problems


def _tracked(pattern):
    try:
        out = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True)
    except OSError:  # no git: nothing can be committed either
        return []
    return [line for line in out.stdout.splitlines() if line]


def check_package(pkg):
    from kernels._rust import Build  # the kernels library's own build.toml parser

    problems = []
    for name in REQUIRED_FILES:
        if not (pkg.root / name).is_file():
            problems.append(f"missing {name}")
    try:
        Build.open(str(pkg.root))
    except Exception as e:  # the parser's message is the useful part
        problems.append(f"build.toml rejected by the kernels parser: {e}")

    init = pkg.source / "__init__.py"
    if not init.is_file():
        problems.append(f"missing torch-ext/{pkg.python_name}/__init__.py")
    else:
        declared = _declared_all(init)
        expected = set(SPEC_API.get(pkg.name, []))
        if (pkg.source / "layers.py").exists():
            expected.add("layers")
        if declared is None:
            problems.append("__init__.py defines no __all__")
        elif pkg.name not in SPEC_API:
            problems.append(f"{pkg.name} is not a package of the spec")
        elif set(declared) != expected:
            missing, extra = sorted(expected - set(declared)), sorted(set(declared) - expected)
            problems.append(f"__all__ differs from the spec: missing {missing}, extra {extra}")
    if not (pkg.source / "reference.py").is_file():
        problems.append("missing reference.py (the math contract)")
    if not list((pkg.root / "tests").glob("test_*.py")):
        problems.append("missing tests/test_*.py")
    if not list((pkg.root / "benchmarks").glob("bench_*.py")):
        problems.append("missing benchmarks/bench_*.py")

    for path, text in expected_copies(pkg).items():
        if not path.exists() or path.read_text() != text:
            problems.append(f"{path.relative_to(pkg.root)} differs from common/ (run `flashrt sync`)")
    if (pkg.source / "_ops.py").exists():
        problems.append("generated _ops.py present in the source tree (it is written at build time)")
    for path in sorted(pkg.source.rglob("*.py")):
        problems += _check_module(path, path.relative_to(pkg.root))
    if pkg.base == ROOT:
        for f in _tracked(f"{pkg.name}/build") + _tracked(f"{pkg.name}/**/_ops.py"):
            problems.append(f"build output committed: {f}")
    return problems


def check(packages=None, log=print) -> int:
    packages = packages or all_packages()
    failures = 0
    for pkg in packages:
        problems = check_package(pkg)
        for p in problems:
            log(f"FAIL {pkg.name}: {p}")
        if not problems:
            log(f"ok   {pkg.name}")
        failures += len(problems)
    absent = sorted(set(SPEC_API) - {p.name for p in all_packages()})
    if absent:
        log(f"not yet in the repository ({len(absent)}): {', '.join(absent)}")
    log(f"check: {len(packages)} package(s), {failures} problem(s)")
    return 1 if failures else 0
