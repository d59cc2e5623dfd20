"""What scripts/kube-binaries and scripts/go-tools share: building a pinned Go program from the
module proxy through a throwaway build module into a per-user, per-version cache.

The scripts import it from their own directory. Only the Python standard library is used; the
Go toolchain must be on PATH. Messages and errors name the script that runs (sys.argv[0]).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

# A healthy binary answers --version in well under a second; this only bounds a hung one.
VERSION_PROBE_TIMEOUT_SECONDS = 30


def program() -> str:
    return Path(sys.argv[0]).name or "gobuild"


def log(message: str) -> None:
    print(f"{program()}: {message}", file=sys.stderr, flush=True)


def user_cache(*parts: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).joinpath("b2ckeys", *parts)


def reports_version(binary: Path, args: list[str], expected: str) -> bool:
    """Whether `binary args` succeeds and prints `expected` (on stdout or stderr)."""
    if not os.access(binary, os.X_OK):
        return False
    try:
        # The binary is one these scripts built into the user's own cache.
        probe = subprocess.run(  # noqa: S603
            [str(binary), *args],
            capture_output=True,
            text=True,
            timeout=VERSION_PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    # Most tools print their version on stdout; some flag libraries (kingpin) use stderr.
    return probe.returncode == 0 and (expected in probe.stdout or expected in probe.stderr)


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    # Never let the go command fetch a different toolchain: the pins target the installed Go.
    env.setdefault("GOTOOLCHAIN", "local")
    # Module fetches must not depend on a git binary or a VCS checkout for the build module.
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def go(args: list[str], cwd: Path) -> str:
    go_binary = shutil.which("go")
    if go_binary is None:
        raise SystemExit(f"{program()}: the Go toolchain (go) is not on PATH")
    # Fixed arguments built by the scripts; only module paths and pinned versions vary.
    completed = subprocess.run(  # noqa: S603
        [go_binary, *args],
        cwd=cwd,
        env=go_env(),
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"{program()}: `go {' '.join(args)}` failed in {cwd}")
    return completed.stdout


def downloaded_module(module: str, version: str, workdir: Path) -> dict[str, str]:
    """`go mod download -json` for one module: its GoMod file and unpacked Dir among others."""
    info: dict[str, str] = json.loads(
        go(["mod", "download", "-json", f"{module}@{version}"], cwd=workdir)
    )
    return info


def downloaded_go_mod(module: str, version: str, workdir: Path) -> str:
    return Path(downloaded_module(module, version, workdir)["GoMod"]).read_text(encoding="utf-8")


_GO_LINE = re.compile(r"^go\s+(\S+)\s*$", re.MULTILINE)
_GODEBUG_LINE = re.compile(r"^godebug\s+.*$", re.MULTILINE)
_REPLACE_BLOCK = re.compile(r"^replace\s*\((.*?)^\)", re.MULTILINE | re.DOTALL)
_REPLACE_SINGLE = re.compile(r"^replace\s+(\S+)(?:\s+\S+)?\s+=>\s+(\S+)\s*$", re.MULTILINE)
_REPLACE_ENTRY = re.compile(r"^\s*(\S+)(?:\s+\S+)?\s+=>\s+(\S+)", re.MULTILINE)


def locally_replaced_modules(go_mod: str) -> list[str]:
    """Modules the upstream go.mod replaces with a directory of its own repository."""
    entries: list[tuple[str, str]] = []
    for block in _REPLACE_BLOCK.findall(go_mod):
        entries.extend(_REPLACE_ENTRY.findall(block))
    entries.extend(_REPLACE_SINGLE.findall(go_mod))
    return sorted({module for module, target in entries if target.startswith(".")})


def required_modules(go_mod: str) -> set[str]:
    required: set[str] = set()
    for line in go_mod.splitlines():
        match = re.match(r"^(?:require\s+)?\s*([a-z0-9.\-]+\.[a-z]+/\S+)\s+v\S+", line.strip())
        if match:
            required.add(match.group(1))
    return required


def build_module_go_mod(
    name: str,
    upstream_go_mod: str,
    require: tuple[str, str],
    pins: dict[str, str],
    extra_requires: dict[str, str] | None = None,
) -> str:
    """The go.mod of a throwaway module that builds `require` (module, version): upstream's
    go and godebug lines, plus `extra_requires` for a main of our own, and `pins` as replace
    directives for modules upstream replaces with local directories."""
    go_line = _GO_LINE.search(upstream_go_mod)
    godebug = _GODEBUG_LINE.search(upstream_go_mod)
    lines = [f"module {name}", "", f"go {go_line.group(1) if go_line else '1.26.0'}", ""]
    if godebug:
        # The main module decides GODEBUG defaults; keep the ones upstream builds with.
        lines += [godebug.group(0), ""]
    requires = {require[0]: require[1], **(extra_requires or {})}
    if len(requires) == 1:
        lines += [f"require {require[0]} {require[1]}", ""]
    else:
        lines += ["require ("]
        lines += [f"\t{module} {version}" for module, version in sorted(requires.items())]
        lines += [")", ""]
    if pins:
        lines += ["replace ("]
        lines += [f"\t{module} => {module} {version}" for module, version in sorted(pins.items())]
        lines += [")", ""]
    return "\n".join(lines)


def carry_over(source: Path, destination: Path) -> None:
    """Reuse an already built file in a new staging directory: a hard link costs nothing (a
    copy across file systems little), where rebuilding would cost a link step of a minute."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Serialise builders (parallel CI jobs, two terminals) on one version directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def replace_directory(staged: Path, target: Path) -> None:
    """Move a fully staged directory into place. A broken earlier result is removed first
    (rename cannot replace a non-empty directory); readers see the old one, none, or the new
    one, never a half-written one, and the caller's lock keeps builders apart."""
    if target.exists():
        shutil.rmtree(target)
    staged.rename(target)
