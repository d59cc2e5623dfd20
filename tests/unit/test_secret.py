import pickle

import pytest

from b2ckeys.secret import SecretBytes, SecretStr

CANARY = "canary-7f3a9c-do-not-leak"


@pytest.mark.parametrize("wrap", [SecretStr(CANARY), SecretBytes(CANARY.encode())])
def test_value_never_shows_in_text_forms(wrap: SecretStr | SecretBytes) -> None:
    for text in (repr(wrap), str(wrap), f"{wrap}", f"{wrap!r}", f"{[wrap]}", f"{ {'k': wrap} }"):
        assert CANARY not in text
        assert "redacted" in text


def test_reveal_returns_the_value() -> None:
    assert SecretStr(CANARY).reveal() == CANARY
    assert SecretBytes(b"\x00\x01").reveal() == b"\x00\x01"


def test_equality_compares_values() -> None:
    assert SecretStr("a") == SecretStr("a")
    assert SecretStr("a") != SecretStr("b")
    assert SecretStr("a") != "a"


def test_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(SecretStr(CANARY))
