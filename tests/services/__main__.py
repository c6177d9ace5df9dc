"""`python -m tests.services install [NAME ...]`: provision the test servers' software on this machine."""

from __future__ import annotations

import argparse
import importlib
import sys

from tests.services import SERVICES


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.services")
    parser.add_argument("action", choices=["install"])
    parser.add_argument("names", nargs="*", help=f"services to install (default: all of {', '.join(SERVICES)})")
    args = parser.parse_args()
    for name in args.names or SERVICES:
        if name not in SERVICES:
            parser.error(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
        print(f"installing {name} ...", flush=True)
        importlib.import_module(f"tests.services.{name}").install()
    return 0


if __name__ == "__main__":
    sys.exit(main())
