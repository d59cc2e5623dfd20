"""The two scripts the image build runs: pruning to the runtime closure, compiling what loads.

Both run here against this very environment (the one `make` builds from the same lock the
image installs), so the closure below is the one the image gets.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_{name}_under_test", ROOT / "scripts" / name)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prune = _load_script("prune_to_runtime.py")
compile_imported = _load_script("compile_imported.py")

RUNTIME = {
    "b2ckeys",
    "kopf",
    "kubernetes",
    "msgraph-beta-sdk",
    "msgraph-core",
    "microsoft-kiota-http",
    "azure-identity",
    "cryptography",
    "aiohttp",
    "httpx",
    "pyyaml",
    # Transitive, so the walk must follow requirements of requirements.
    "msal",
    "yarl",
    "cffi",
}
DEVELOPMENT = {
    "kmock",  # the kube emulator's base: the `emulators` extra, never the operator's runtime
    "pytest",
    "pytest-asyncio",
    "hypothesis",
    "mypy",
    "ruff",
    "import-linter",
    "jsonschema",
    "cel-python",
    "google-re2",
    "types-pyyaml",
    "setuptools",
}


# --- prune_to_runtime ---------------------------------------------------------------------------


def test_the_runtime_closure_keeps_what_the_operator_imports() -> None:
    closure = prune.runtime_closure("b2ckeys")
    assert closure >= RUNTIME


def test_the_runtime_closure_leaves_out_the_development_tools() -> None:
    closure = prune.runtime_closure("b2ckeys")
    assert not closure & DEVELOPMENT, closure & DEVELOPMENT


def test_removable_is_the_rest_of_the_environment_but_pip() -> None:
    removable = set(prune.removable("b2ckeys"))
    assert removable >= DEVELOPMENT
    assert not removable & prune.runtime_closure("b2ckeys")
    assert "pip" not in removable
    assert removable | prune.runtime_closure("b2ckeys") | {"pip"} == prune.installed()


def test_a_missing_requirement_is_an_error_not_a_smaller_closure() -> None:
    with pytest.raises(prune.IncompleteEnvironment, match="not installed"):
        prune.runtime_closure(f"no-such-distribution-{uuid.uuid4().hex}")


@pytest.mark.parametrize(
    ("text", "extras", "wanted"),
    [
        ("a", (), True),
        ('a; python_version < "3"', (), False),
        ('a; python_version >= "3.11"', (), True),
        ('a; extra == "socks"', (), False),
        ('a; extra == "socks"', ("socks",), True),
        ('a; extra == "socks"', ("http2",), False),
        ('a; sys_platform == "win32"', (), sys.platform == "win32"),
    ],
)
def test_markers_are_evaluated_for_this_interpreter_and_the_asked_extras(
    text: str, extras: tuple[str, ...], wanted: bool
) -> None:
    assert prune._wanted(Requirement(text), extras) is wanted


def test_dry_run_prints_and_uninstalls_nothing() -> None:
    before = prune.installed()
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "prune_to_runtime.py"), "--dry-run", "b2ckeys"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(result.stdout.split()) == set(prune.removable("b2ckeys"))
    assert prune.installed() == before


# --- compile_imported ---------------------------------------------------------------------------


def _flags(pyc: Path) -> int:
    # PEP 552: a 4-byte magic number, then a 4-byte little-endian flags field.
    return int.from_bytes(pyc.read_bytes()[4:8], "little")


def test_loaded_modules_under_a_prefix_get_unchecked_hash_bytecode(tmp_path: Path) -> None:
    name = f"compiled_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "import json\nCALLED = []\ndef warm_up():\n    CALLED.append(True)\n"
    )
    unrelated = tmp_path / "never_imported.py"
    unrelated.write_text("X = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        compile_imported.load([name, f"{name}:warm_up"])
        module = sys.modules[name]
        assert module.CALLED == [True]
        sources = compile_imported.loaded_sources([tmp_path])
        assert sources == [(tmp_path / f"{name}.py").resolve()]
        assert compile_imported.compile_all(sources) == 1
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
    pyc = Path(importlib.util.cache_from_source(str(tmp_path / f"{name}.py")))
    # 0b01: hash-based; check_source clear, so the source is never read to validate it.
    assert _flags(pyc) == 0b01
    assert not Path(importlib.util.cache_from_source(str(unrelated))).exists()


def test_modules_outside_the_prefixes_are_left_alone(tmp_path: Path) -> None:
    # json is loaded (the standard library), but not from tmp_path.
    assert "json" in sys.modules
    assert compile_imported.loaded_sources([tmp_path]) == []
