"""Session-wide test setup. Others add fixtures here too: keep each one small and documented.

Trust for the emulators' TLS: every HTTPS client in the test session (aiohttp under
azure-identity, httpx under the Graph SDK, requests under MSAL) must trust the session's test CA
through `SSL_CERT_FILE` / `REQUESTS_CA_BUNDLE`, never by disabling verification. aiohttp builds
its verified SSL context once, when first imported, so the CA is created and exported here, at
import time of the root conftest, before test modules import kopf, aiohttp or azure.
"""

from __future__ import annotations

import atexit
import os
import shutil
import ssl
import sys
import tempfile
from pathlib import Path

import pytest

from b2ckeys_emulators.graph.tls import ensure_ca

_EMULATOR_CA_DIR = Path(tempfile.mkdtemp(prefix="b2ckeys-test-ca-"))
atexit.register(shutil.rmtree, _EMULATOR_CA_DIR, ignore_errors=True)
_EMULATOR_CA = ensure_ca(_EMULATOR_CA_DIR)
os.environ["SSL_CERT_FILE"] = str(_EMULATOR_CA)
os.environ["REQUESTS_CA_BUNDLE"] = str(_EMULATOR_CA)


def _trust_ca_in_already_built_aiohttp_context(ca: Path) -> None:
    # pytest loads entry-point plugins before this file, and kmock's plugin imports aiohttp, so
    # aiohttp's import-time verified context predates SSL_CERT_FILE. Adding the CA to that
    # context object gives it the same trust it would have had; verification stays on.
    connector = sys.modules.get("aiohttp.connector")
    context = getattr(connector, "_SSL_CONTEXT_VERIFIED", None)
    if isinstance(context, ssl.SSLContext):
        context.load_verify_locations(cafile=str(ca))


_trust_ca_in_already_built_aiohttp_context(_EMULATOR_CA)


@pytest.fixture(scope="session")
def emulator_ca_dir() -> Path:
    """The folder holding the session's test CA (`ca.pem`, `ca-key.pem`) for emulator TLS."""
    return _EMULATOR_CA_DIR
