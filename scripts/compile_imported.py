#!/usr/bin/env python3
"""Write bytecode for exactly the modules a program loads, for a read-only image.

With a read-only root filesystem Python cannot cache bytecode, so every module without a
`.pyc` is compiled again, in memory, at every start: the b2ckeys operator's imports take ~1.9 s
that way instead of ~0.9 s. The official python images delete the standard library's `.pyc`
files, and compiling the whole virtual environment costs ~330 MB (msgraph-beta-sdk ships ~30,000
generated modules, of which the operator loads ~30) and fails on a few of its file names, which
exceed 255 bytes once `.cpython-311.pyc` is appended. So this imports the given modules, calls
the given functions (to load what they import lazily), and compiles every loaded module file
under the environment's prefix and the interpreter's own (the standard library) as
unchecked-hash bytecode: never compared with its source, so it stays valid whatever timestamps
a copy gives the files.

Usage (with the environment's own interpreter, as a user who may write both prefixes):
  python scripts/compile_imported.py b2ckeys.handlers b2ckeys.graph.msgraph:warm_up_models

Only the standard library is used.
"""

from __future__ import annotations

import importlib
import py_compile
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path


def load(targets: Iterable[str]) -> None:
    """Import each `module`, and call each `module:function` with no arguments."""
    for target in targets:
        module_name, _, function_name = target.partition(":")
        module = importlib.import_module(module_name)
        if function_name:
            getattr(module, function_name)()


def loaded_sources(prefixes: Iterable[Path]) -> list[Path]:
    """Source files of the modules loaded so far that live under one of `prefixes`."""
    roots = [prefix.resolve() for prefix in prefixes]
    sources: set[Path] = set()
    for module in list(sys.modules.values()):
        origin = getattr(module, "__file__", None)
        if origin and origin.endswith(".py"):
            path = Path(origin).resolve()
            if any(path.is_relative_to(root) for root in roots):
                sources.add(path)
    return sorted(sources)


def compile_all(sources: Iterable[Path]) -> int:
    count = 0
    for source in sources:
        py_compile.compile(
            str(source),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        count += 1
    return count


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    load(argv)
    prefixes = sorted({sys.prefix, sys.base_prefix})
    count = compile_all(loaded_sources(map(Path, prefixes)))
    print(f"compiled {count} loaded modules under {' and '.join(prefixes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
