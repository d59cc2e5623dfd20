"""Guards on the project's layout that a refactor could silently break."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_folder_is_not_a_package() -> None:
    # `operator/__init__.py` would shadow the standard library's `operator` module.
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_stdlib_operator_module_is_the_real_one() -> None:
    import operator

    assert hasattr(operator, "itemgetter")
