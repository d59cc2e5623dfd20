"""`b2ckeys graph-emulator` as a real subprocess: first line, a token, a Graph call, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from b2ckeys_emulators.graph.server import DEFAULT_TENANT_ID

B2CKEYS = Path(sys.executable).parent / "b2ckeys"
FIRST_LINE = re.compile(r"^b2ckeys graph-emulator listening on (https://127\.0\.0\.1:\d+)\n$")
# Starting Python, importing aiohttp and cryptography and issuing a certificate: ~1 s here.
START_TIMEOUT_SECONDS = 20
STOP_TIMEOUT_SECONDS = 10
SCOPE = "https://graph.microsoft.com/.default"


@asynccontextmanager
async def emulator_process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        str(B2CKEYS),
        "graph-emulator",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def token(url: str, tenant: str, client_id: str, secret: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(
            f"{url}/{tenant}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "scope": SCOPE,
            },
        )


async def test_cli_serves_until_sigterm(emulator_ca_dir: Path) -> None:
    args = ("--tls-dir", str(emulator_ca_dir), "--tenant-id", "contoso-b2c")
    app = "cli-app:cli-secret:TrustFrameworkKeySet.ReadWrite.All"
    async with emulator_process(*args, "--app", app, "--rule", "prefix_twice=true") as process:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_SECONDS)
        match = FIRST_LINE.match(first.decode())
        assert match, first
        url = match.group(1)
        granted = await token(url, "contoso-b2c", "cli-app", "cli-secret")
        assert granted.status_code == 200, granted.text
        async with httpx.AsyncClient(timeout=10) as http:
            created = await http.post(
                f"{url}/beta/trustFramework/keySets",
                json={"id": "B2C_1A_x"},
                headers={"Authorization": f"Bearer {granted.json()['access_token']}"},
            )
        assert created.json()["id"] == "B2C_1A_B2C_1A_x"
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
        rest = (await process.stdout.read()).decode()
        assert process.stderr is not None
        errors = (await process.stderr.read()).decode()
    assert code == 0, errors
    assert "app: client_id=cli-app" in rest
    assert "Traceback" not in errors


async def test_cli_defaults_print_a_usable_app_and_stop_on_sigint() -> None:
    async with emulator_process() as process:
        assert process.stdout is not None
        lines: list[str] = []
        first = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_SECONDS)
        match = FIRST_LINE.match(first.decode())
        assert match, first
        while not lines or not lines[-1].startswith("app:"):
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_SECONDS)
            lines.append(line.decode().strip())
        ca_line = next(line for line in lines if line.startswith("ca: "))
        ca_path = Path(ca_line.split()[1])
        app = dict(part.split("=", 1) for part in lines[-1].removeprefix("app: ").split())
        # The default CA lives in a temporary folder of its own, which this session does not
        # trust; load it explicitly for this one client (verification stays on).
        async with httpx.AsyncClient(verify=_context(ca_path), timeout=10) as http:
            granted = await http.post(
                f"{match.group(1)}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": app["client_id"],
                    "client_secret": app["secret"],
                    "scope": SCOPE,
                },
            )
        assert granted.status_code == 200, granted.text
        assert app["roles"] == "TrustFrameworkKeySet.ReadWrite.All"
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS) == 0
    assert not await asyncio.to_thread(ca_path.exists), "the temporary CA folder is removed"


def _context(ca_path: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_path))


async def test_cli_refuses_a_malformed_app() -> None:
    async with emulator_process("--app", "only-a-client-id") as process:
        code = await asyncio.wait_for(process.wait(), START_TIMEOUT_SECONDS)
        assert process.stderr is not None
        errors = (await process.stderr.read()).decode()
    assert code == 2
    assert "CLIENT_ID:SECRET:ROLE" in errors
