"""The parsed-source cache: valid material only, bounded, and only the public part of it."""

from __future__ import annotations

from b2ckeys.plan import DesiredCertificate, DesiredGenerated
from b2ckeys.sources import ParsedSources


def _cert(nbf: int, exp: int) -> DesiredCertificate:
    return DesiredCertificate("uploadPkcs12", "x5t", "s256", nbf, exp)


def test_hits_only_inside_the_validity_window() -> None:
    cache = ParsedSources()
    cache.put(("a",), _cert(100, 200))
    assert cache.get(("a",), 150, allow_not_yet_valid=False) is not None
    assert cache.get(("a",), 99, allow_not_yet_valid=True) is not None
    assert cache.get(("a",), 99, allow_not_yet_valid=False) is None  # refused again by parsing
    cache.put(("a",), _cert(100, 200))
    assert cache.get(("a",), 200, allow_not_yet_valid=False) is None  # expired: parse again
    assert cache.get(("a",), 150, allow_not_yet_valid=False) is None  # and it was dropped


def test_other_keys_miss_and_the_oldest_entry_goes_first() -> None:
    cache = ParsedSources()
    generated = DesiredGenerated("RSA", "sig", 0.0, None, None)
    for i in range(cache.LIMIT + 1):
        cache.put((i,), generated)
    assert cache.get((0,), 0, allow_not_yet_valid=False) is None
    assert cache.get((1,), 0, allow_not_yet_valid=False) is generated
    assert cache.get(("other",), 0, allow_not_yet_valid=False) is None
