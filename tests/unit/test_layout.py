"""Guards on the project's layout that a refactor could silently break."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_folder_is_not_a_package() -> None:
    # `operator/__init__.py` would shadow the standard library's `operator` module.
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_stdlib_operator_module_is_the_real_one() -> None:
    import operator

    assert hasattr(operator, "itemgetter")


PACKAGE = ROOT / "operator" / "b2ckeys"
EMULATORS = ROOT / "operator" / "b2ckeys_emulators"


def test_the_operator_package_holds_only_what_runs_in_the_cluster() -> None:
    # What stands in for the cloud lives in its own package; no module of the operator's is
    # named after an emulator, so the folders tell the architecture without the README.
    assert EMULATORS.is_dir()
    for module in PACKAGE.rglob("*.py"):
        assert "emulator" not in module.name, module
    for name in ("demo.py", "devpki.py", "processes.py"):
        assert not (PACKAGE / name).exists(), name
        assert (EMULATORS / name).is_file(), name


def test_the_operators_import_graph_never_reaches_the_emulators() -> None:
    # import-linter's contract says the same for `make lint`; this walks what the operator's
    # modules really import when loaded, so a lazy import inside a function is caught too.
    import subprocess
    import sys

    program = (
        "import sys, pkgutil, importlib, b2ckeys\n"
        "for m in pkgutil.walk_packages(b2ckeys.__path__, 'b2ckeys.'):\n"
        "    importlib.import_module(m.name)\n"
        "stand_ins = {'b2ckeys_emulators', 'kmock'}\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in stand_ins)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"the operator's package imports {out}"


def test_emulator_subcommands_say_what_is_missing_without_the_emulators(tmp_path: Path) -> None:
    # The image ships b2ckeys alone: `b2ckeys demo` there must say why it cannot run.
    import shutil
    import subprocess
    import sys

    shutil.copytree(PACKAGE, tmp_path / "b2ckeys")
    program = "import sys; from b2ckeys.cli import main; sys.exit(main(['demo']))"
    # -S: no site-packages, so only the copied operator package is importable.
    done = subprocess.run(
        [sys.executable, "-S", "-c", program],
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "needs the emulators" in done.stderr


def test_test_module_names_are_unique_across_tiers() -> None:
    # The tiers are folders without __init__.py (pytest's default import mode): two test files
    # with one basename make the second fail to import, and the whole run stops at collection.
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
