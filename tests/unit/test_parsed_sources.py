"""The parsed-source cache may only return material that is still valid at `now`."""

from __future__ import annotations

from b2ckeys.graph.client import RemoteKey
from b2ckeys.plan import DesiredCertificate, DesiredGenerated
from b2ckeys.sync import Gathered, _ParsedSources


async def _never(*_: object) -> RemoteKey:
    raise AssertionError("not called")


def _cert(nbf: int, exp: int) -> Gathered:
    return Gathered(DesiredCertificate("uploadPkcs12", "x5t", "s256", nbf, exp), _never)


def test_hits_only_inside_the_validity_window() -> None:
    cache = _ParsedSources()
    cache.put(("a",), _cert(100, 200))
    assert cache.get(("a",), 150, allow_not_yet_valid=False) is not None
    assert cache.get(("a",), 99, allow_not_yet_valid=True) is not None
    assert cache.get(("a",), 99, allow_not_yet_valid=False) is None  # refused again by parsing
    cache.put(("a",), _cert(100, 200))
    assert cache.get(("a",), 200, allow_not_yet_valid=False) is None  # expired: parse again
    assert cache.get(("a",), 150, allow_not_yet_valid=False) is None  # and it was dropped


def test_other_keys_miss_and_the_oldest_entry_goes_first() -> None:
    cache = _ParsedSources()
    generated = Gathered(DesiredGenerated("RSA", "sig", 0.0, None, None), _never)
    for i in range(cache.LIMIT + 1):
        cache.put((i,), generated)
    assert cache.get((0,), 0, allow_not_yet_valid=False) is None
    assert cache.get((1,), 0, allow_not_yet_valid=False) is generated
    assert cache.get(("other",), 0, allow_not_yet_valid=False) is None
