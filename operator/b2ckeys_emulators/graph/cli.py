"""`b2ckeys graph-emulator`: serve the B2C key set emulator until SIGTERM or SIGINT.

The first stdout line is exactly `b2ckeys graph-emulator listening on URL` (flushed), so a
parent process can wait for it; the lines after it say how to connect.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from b2ckeys_emulators.graph.identity import READ_ROLE, WRITE_ROLE
from b2ckeys_emulators.graph.server import (
    DEFAULT_TENANT_ID,
    EmulatedApp,
    EmulatorRules,
    serve_graph_emulator,
)

DEFAULT_CLIENT_ID = "b2ce0000-0000-4000-8000-0000000c11e7"
_KNOWN_ROLES = (READ_ROLE, WRITE_ROLE)


def main(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(list(argv))
    try:
        apps = [_parse_app(spec) for spec in args.app] or [_default_app()]
        rules = _parse_rules(args.rule)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    created_tls_dir = args.tls_dir is None
    tls_dir = (
        Path(tempfile.mkdtemp(prefix="b2ckeys-graph-emulator-"))
        if created_tls_dir
        else args.tls_dir
    )
    try:
        asyncio.run(
            _serve(
                args.host,
                args.port,
                tls_dir,
                args.tenant_id,
                apps,
                rules,
                key_pool_size=args.key_pool,
                write_rate_limit=args.write_rate_limit,
            )
        )
    finally:
        if created_tls_dir:
            shutil.rmtree(tls_dir, ignore_errors=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b2ckeys graph-emulator",
        description="Serve an emulator of Graph beta /trustFramework/keySets and Entra tokens.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--tls-dir",
        type=Path,
        default=None,
        help="where the test CA lives (ca.pem, reused if present); default: a temporary folder",
    )
    parser.add_argument("--tenant-id", default=DEFAULT_TENANT_ID)
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="CLIENT_ID:SECRET:ROLE[,ROLE]",
        help="an app registration with a client secret (repeatable); default: one ReadWrite app "
        "with a random secret, printed at start",
    )
    parser.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one EmulatorRules field, e.g. duplicate_create_status=400",
    )
    parser.add_argument(
        "--key-pool",
        type=_non_negative,
        default=0,
        metavar="N",
        help="make N RSA keys in the background for generateKey to take (benchmarks: keeps the "
        "emulator's RSA generation out of the operator's figures); GET /_emulator/key-pool",
    )
    parser.add_argument(
        "--write-rate-limit",
        type=_positive,
        default=None,
        metavar="W",
        help="accept at most W Graph writes in any second; others get 429 with Retry-After",
    )
    parser.add_argument("--log-level", default="warning")
    return parser


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _parse_app(spec: str) -> EmulatedApp:
    client_id, _, rest = spec.partition(":")
    secret, _, roles_text = rest.rpartition(":")
    roles = tuple(r.strip() for r in roles_text.split(",") if r.strip())
    if not client_id or not secret or not roles:
        raise ValueError(f"--app wants CLIENT_ID:SECRET:ROLE[,ROLE], not {spec.split(':')[0]}:…")
    unknown = [r for r in roles if r not in _KNOWN_ROLES]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r}; use {' or '.join(_KNOWN_ROLES)}")
    return EmulatedApp(client_id=client_id, secret=secret, roles=roles)


def _default_app() -> EmulatedApp:
    return EmulatedApp(
        client_id=DEFAULT_CLIENT_ID, secret=secrets.token_urlsafe(24), roles=(WRITE_ROLE,)
    )


def _parse_rules(overrides: Sequence[str]) -> EmulatorRules:
    fields = {f.name: f for f in dataclasses.fields(EmulatorRules)}
    changes: dict[str, object] = {}
    for override in overrides:
        name, sep, text = override.partition("=")
        if not sep or name not in fields:
            raise ValueError(f"--rule wants NAME=VALUE with NAME an EmulatorRules field: {name!r}")
        kind = fields[name].type
        if kind in ("bool", bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"--rule {name} wants true or false")
            changes[name] = text.lower() in ("true", "1", "yes")
        elif kind in ("int", int):
            changes[name] = int(text)
        else:
            changes[name] = text
    return EmulatorRules(**changes)  # type: ignore[arg-type]


async def _serve(
    host: str,
    port: int,
    tls_dir: Path,
    tenant_id: str,
    apps: Sequence[EmulatedApp],
    rules: EmulatorRules,
    *,
    key_pool_size: int,
    write_rate_limit: int | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve_graph_emulator(
        host=host,
        port=port,
        tls_dir=tls_dir,
        tenant_id=tenant_id,
        apps=apps,
        rules=rules,
        key_pool_size=key_pool_size,
        write_rate_limit=write_rate_limit,
    ) as emu:
        lines = [
            f"b2ckeys graph-emulator listening on {emu.url}",
            f"graph base url: {emu.graph_base_url}",
            f"authority host: {emu.authority_host}",
            f"tenant id: {emu.tenant_id}",
            f"ca: {emu.ca_path}  (clients trust it through SSL_CERT_FILE / REQUESTS_CA_BUNDLE)",
        ]
        # These are the emulator's own throw-away credentials, printed so a person can use them.
        lines += [
            f"app: client_id={app.client_id} secret={app.secret} roles={','.join(app.roles)}"
            for app in apps
        ]
        print("\n".join(lines), flush=True)
        await stop.wait()
