#!/usr/bin/env python3
"""Uninstall from this environment every distribution that a package does not need at run time.

The image's builder installs the whole hashed `requirements.lock` (one lock for development and
the image, so every byte in the image was hash-checked) and then the package itself. The lock
also carries the development tools (pytest, mypy, ruff, ...), which have no place in a runtime
image. This walks the package's `Requires-Dist` metadata (markers evaluated for this
interpreter, extras followed only where a requirement asks for them) and removes the rest with
pip. Anything the closure names but the environment lacks is an error: the lock is incomplete.

Usage (with the environment's own interpreter):
  python scripts/prune_to_runtime.py b2ckeys            uninstall what b2ckeys does not need
  python scripts/prune_to_runtime.py --dry-run b2ckeys  only print what would go

pip itself is kept (it does the uninstalling); the Dockerfile removes it last.
Only the standard library and `packaging` (pinned in the lock) are used.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
from collections.abc import Iterable, Sequence

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

# The installer: removing it here would pull the floor from under the uninstall itself.
KEEP = frozenset({canonicalize_name("pip")})


class IncompleteEnvironment(RuntimeError):
    pass


def _wanted(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
    return any(requirement.marker.evaluate(env) for env in environments)


def runtime_closure(root: str) -> set[NormalizedName]:
    """`root` and everything it needs at run time in this environment, by normalized name."""
    found: set[NormalizedName] = set()
    visited: set[tuple[NormalizedName, frozenset[str]]] = set()
    pending: list[tuple[str, frozenset[str], str]] = [(root, frozenset(), "the command line")]
    while pending:
        name, extras, wanted_by = pending.pop()
        key = canonicalize_name(name)
        if (key, extras) in visited:
            continue
        visited.add((key, extras))
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise IncompleteEnvironment(
                f"{name} (needed by {wanted_by}) is not installed"
            ) from None
        found.add(key)
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if _wanted(requirement, extras):
                pending.append((requirement.name, frozenset(requirement.extras), name))
    return found


def installed() -> set[NormalizedName]:
    return {
        canonicalize_name(d.metadata["Name"])
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }


def removable(root: str) -> list[NormalizedName]:
    return sorted(installed() - runtime_closure(root) - KEEP)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("package", help="the distribution whose run-time needs are kept")
    parser.add_argument("--dry-run", action="store_true", help="print, do not uninstall")
    args = parser.parse_args(list(argv))
    try:
        names = removable(args.package)
    except IncompleteEnvironment as problem:
        print(f"prune_to_runtime: {problem}", file=sys.stderr)
        return 1
    print("\n".join(names) if names else "nothing to remove")
    if names and not args.dry_run:
        subprocess.run(  # noqa: S603 (this interpreter's pip, names from installed metadata)
            [sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", *names], check=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
