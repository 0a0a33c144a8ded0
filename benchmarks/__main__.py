"""``python -m benchmarks [--list] [NAME [options]]`` (the nox session ``bench`` runs this)."""

from __future__ import annotations

import argparse
import sys

from . import discover


def main(argv: list[str] | None = None) -> int:
    benches = discover()
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measured figures (printed, never asserted). Without NAME: run them all "
                    "with their defaults.",
    )
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    sub = p.add_subparsers(dest="name", metavar="NAME")
    for name, mod in benches.items():
        sp = sub.add_parser(name, help=mod.HELP, description=mod.HELP,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(sp)
    args = p.parse_args(argv)
    if args.list:
        for name, mod in benches.items():
            print(f"{name:14s} {mod.HELP}")
        return 0
    if args.name:
        return int(benches[args.name].run(args) or 0)
    rc = 0
    for name, mod in benches.items():
        print(f"\n=== {name}: {mod.HELP}", flush=True)
        sp = argparse.ArgumentParser()
        mod.add_arguments(sp)
        rc |= int(mod.run(sp.parse_args([])) or 0)
    return rc


if __name__ == "__main__":
    sys.exit(main())
