"""The ``flashrt`` command: build | check | sync | validate | bench."""

import argparse
import sys


def _cmd_build(args):
    from .build import build
    from .repo import select

    for pkg in select(args.packages):
        build(pkg)
    return 0


def _cmd_check(args):
    from .check import check
    from .repo import select

    return check(select(args.packages))


def _cmd_sync(args):
    from .repo import select
    from .sync import sync

    sync(select(args.packages))
    return 0


def _cmd_validate(args):
    from .validation import ensure_interpreter_if_cpu

    ensure_interpreter_if_cpu()  # before triton is imported
    from .validate import validate

    return validate(args.packages, seed=args.seed)


def _cmd_bench(args):
    from .bench.run import bench

    return bench(args.packages, quick=args.quick, out_root=args.results, only=args.only,
                 budget=args.budget)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="flashrt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in [
        ("build", _cmd_build, "write build/torch-<backend>/ of each package (kernels noarch layout)"),
        ("check", _cmd_check, "structural gate: files, build.toml, API vs spec, synced helpers"),
        ("sync", _cmd_sync, "copy common/ helpers into every package"),
        ("validate", _cmd_validate, "build, load through kernels, check every function vs reference"),
        ("bench", _cmd_bench, "run package benchmarks on the GPU, write results/ and RESULTS.md"),
    ]:
        p = sub.add_parser(name, help=help_)
        p.add_argument("packages", nargs="*", help="package names (default: all)")
        p.set_defaults(func=func)
        if name == "validate":
            p.add_argument("--seed", type=int, default=0)
        if name == "bench":
            p.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
            p.add_argument("--results", default=None, help="results root (default: results/)")
            p.add_argument("--only", action="append", default=None, metavar="SUBSTR",
                           help="measure only rows whose 'op shape' contains SUBSTR (repeatable) "
                                "and merge them into the existing results JSON")
            p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                           help="per package: rows reached after SECONDS are not measured "
                                "(the record keeps the earlier run's rows for them)")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
