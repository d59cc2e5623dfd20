"""Wrappers that keep secret values out of logs, reprs, tracebacks and pickles.

Every secret the operator handles (a string secret, a PKCS#12 password, PFX bytes, a private key)
travels inside one of these. Only the code that hands the value to its final consumer (the Graph
request body, the cryptography call) calls `reveal()`.
"""

from __future__ import annotations

import hmac
from typing import Generic, NoReturn, TypeVar

_T = TypeVar("_T", str, bytes)


class _Secret(Generic[_T]):
    __slots__ = ("_value",)
    _value: _T

    def __init__(self, value: _T) -> None:
        self._value = value

    def reveal(self) -> _T:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted, {len(self._value)} {self._unit}>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        mine: bytes | str = self._value
        theirs: bytes | str = other._value
        a = mine.encode() if isinstance(mine, str) else mine
        b = theirs.encode() if isinstance(theirs, str) else theirs
        return hmac.compare_digest(a, b)

    def __hash__(self) -> int:
        return hash((type(self), len(self._value)))

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} must not be pickled or copied to disk")

    _unit = "items"


class SecretStr(_Secret[str]):
    """A secret text value (a client secret, a PKCS#12 password)."""

    __slots__ = ()
    _unit = "chars"


class SecretBytes(_Secret[bytes]):
    """Secret binary material (PFX bytes, a private key in PEM or DER)."""

    __slots__ = ()
    _unit = "bytes"
