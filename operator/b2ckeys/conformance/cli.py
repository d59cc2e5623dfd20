"""`b2ckeys conformance`: check the B2C key set rules on a tenant, with the operator's own
credential settings (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET or a certificate or a
federated token, AZURE_AUTHORITY_HOST, B2CKEYS_GRAPH_BASE_URL), or a B2CTenant's (--tenant)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import secrets
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from b2ckeys.conformance import report
from b2ckeys.conformance.catalogue import RULES, Rule, select
from b2ckeys.conformance.context import Context
from b2ckeys.conformance.probe import B2C_PREFIX, KEY_SETS, Guard, LiveProbe, PlanProbe
from b2ckeys.conformance.runner import run_all
from b2ckeys.graph.client import GraphConnection, GraphError
from b2ckeys.secret import SecretStr

if TYPE_CHECKING:
    from b2ckeys.graph.msgraph import MsGraphKeySetClient
from b2ckeys.settings import Settings, SettingsError

DEFAULT_PREFIX = "B2C_1A_B2CKEYSCONFORMANCE_"
PROG = "b2ckeys conformance"


class CommandFailed(Exception):
    """Said once on stderr; exit code 2."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Check, on your B2C tenant, the key set rules b2ckeys relies on. It creates "
        "key sets whose ids start with --prefix, runs one check per rule, and deletes them "
        "(and their .bak copies) at the end. Exit code 0 only when nothing DIFFERS.",
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"default {DEFAULT_PREFIX}")
    p.add_argument("--keep", action="store_true", help="leave the key sets it created")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--only", nargs="+", metavar="RULE", help="rule ids or sections, e.g. 2.6")
    p.add_argument("--plan", action="store_true", help="list every call it would make; send none")
    p.add_argument("--list", action="store_true", help="list the rules and exit")
    p.add_argument("--tenant", help="a B2CTenant (NS/NAME) or ClusterB2CTenant (NAME)")
    p.add_argument("--kubeconfig", default=None, help="with --tenant (default: KUBECONFIG)")
    p.add_argument("--context", default=None, help="with --tenant: the kubeconfig context")
    p.add_argument(
        "--operator-namespace",
        default="b2ckeys-system",
        help="with --tenant: where a ClusterB2CTenant's Secrets live (default b2ckeys-system)",
    )
    p.add_argument("--read-only-client-id", help="an app with TrustFrameworkKeySet.Read.All only")
    p.add_argument(
        "--read-only-client-secret",
        help="that app's client secret (visible to other local users in the process list: "
        "prefer --read-only-client-secret-file)",
    )
    p.add_argument("--read-only-client-secret-file", help="a file holding that app's secret")
    return p


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    if args.list:
        for rule in RULES:
            print(f"{rule.id:<24} [{rule.tag}] {rule.title}")
        return 0
    # The command reports every failure itself; libraries' own warnings would repeat them.
    logging.disable(logging.ERROR)
    try:
        return asyncio.run(_run(args))
    except (CommandFailed, SettingsError, ValueError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # The run's cleanup has run by now (it is in a finally block the cancellation reaches).
        print(
            f"{PROG}: interrupted; this run's key sets were deleted unless --keep", file=sys.stderr
        )
        return 130


def _check_prefix(prefix: str) -> None:
    if not prefix.startswith(B2C_PREFIX) or len(prefix) <= len(B2C_PREFIX):
        raise CommandFailed(
            f"--prefix must start with {B2C_PREFIX} (B2C adds it to every id) and name "
            f"something after it, e.g. {DEFAULT_PREFIX}"
        )


async def _run(args: argparse.Namespace) -> int:
    _check_prefix(args.prefix)
    rules = select(args.only)
    guard = Guard(args.prefix)
    run = secrets.token_hex(3).upper()
    if args.plan:
        probe = PlanProbe(guard)
        ctx = Context(probe=probe, prefix=args.prefix, run=run)
        if args.read_only_client_id:
            ctx.reader = probe
            ctx.reader_roles = _nothing
            ctx.reader_wrong_secret = _nothing
        rows, _ = await run_all(ctx, rules, keep=args.keep)
        made = sum(len(row.calls) for row in rows)
        cleanup = [str(call) for call in probe.calls[made:]]
        print(report.plan(rows, cleanup, stem=ctx.stem, prefix=args.prefix))
        return 0
    return await _live(args, rules, guard, run)


async def _nothing() -> None:
    return None


async def _live(args: argparse.Namespace, rules: list[Rule], guard: Guard, run: str) -> int:
    # Imported here: --plan and --list never load the Graph SDK.
    from b2ckeys.graph.msgraph import MsGraphKeySetClient

    conn = await _connection(args)
    writer = MsGraphKeySetClient.from_connection(conn)
    reader: MsGraphKeySetClient | None = None
    try:
        ctx = Context(probe=LiveProbe(writer, guard), prefix=args.prefix, run=run)
        await _preflight(writer, conn)
        print(
            f"{PROG}: creating key sets named {ctx.stem}* in tenant {conn.tenant_id} via "
            f"{conn.base_url}; only ids starting with {args.prefix} are touched"
            + ("; they are kept (--keep)" if args.keep else "; all are deleted at the end"),
            file=sys.stderr,
        )
        if args.read_only_client_id:
            reader_secret = _read_only_secret(args)
            reader_conn = _as_app(conn, args.read_only_client_id, reader_secret)
            reader = MsGraphKeySetClient.from_connection(reader_conn)
            ctx.reader = LiveProbe(reader, guard)
            ctx.reader_roles = reader.granted_roles
            ctx.reader_wrong_secret = lambda: _wrong_secret_code(reader_conn)
        started = time.monotonic()
        rows, cleanup = await run_all(ctx, rules, keep=args.keep)
        seconds = time.monotonic() - started
    finally:
        await writer.aclose()
        if reader is not None:
            await reader.aclose()
    if args.json:
        about = {
            "prefix": args.prefix,
            "key_set_ids_start_with": ctx.stem,
            "tenant_id": conn.tenant_id,
            "graph_base_url": conn.base_url,
        }
        print(report.as_json(rows, cleanup, seconds=seconds, about=about))
    else:
        print(report.table(rows, cleanup, seconds=seconds))
    return 1 if any(row.result == "DIFFERS" for row in rows) else 0


async def _preflight(writer: MsGraphKeySetClient, conn: GraphConnection) -> None:
    """One read before any write: a credential or permission problem is said once, plainly,
    instead of as every row's error."""
    from b2ckeys.graph.msgraph_pipeline import REQUIRED_PERMISSION

    try:
        listed = await writer.send_raw("GET", KEY_SETS)
    except GraphError as error:
        raise CommandFailed(f"cannot reach Graph as app {conn.client_id}: {error}") from None
    roles = await writer.granted_roles()
    if listed.status in (401, 403) or (roles is not None and REQUIRED_PERMISSION not in roles):
        raise CommandFailed(
            f"app {conn.client_id} may not write key sets (GET answered {listed.status}; token "
            f"roles {sorted(roles) if roles is not None else 'unreadable'}): it needs the "
            f"Microsoft Graph application permission {REQUIRED_PERMISSION}, with admin consent"
        )


def _read_only_secret(args: argparse.Namespace) -> str:
    if args.read_only_client_secret_file:
        try:
            with open(args.read_only_client_secret_file, encoding="utf-8") as file:
                secret = file.read().strip()
        except OSError as error:
            raise CommandFailed(f"cannot read --read-only-client-secret-file: {error}") from None
    else:
        secret = args.read_only_client_secret or ""
    if not secret:
        raise CommandFailed(
            "--read-only-client-id needs --read-only-client-secret-file (or "
            "--read-only-client-secret)"
        )
    return secret


def _as_app(conn: GraphConnection, client_id: str, secret: str) -> GraphConnection:
    return dataclasses.replace(
        conn,
        client_id=client_id,
        client_secret=SecretStr(secret),
        client_certificate_path=None,
        client_certificate_data=None,
        client_certificate_password=None,
        federated_token_file=None,
    )


async def _wrong_secret_code(conn: GraphConnection) -> str | None:
    """The error code Entra gives the read-only app's id with a made-up secret."""
    from b2ckeys.graph.msgraph import MsGraphKeySetClient

    wrong = _as_app(conn, conn.client_id, "wrong-" + secrets.token_urlsafe(16))
    client = MsGraphKeySetClient.from_connection(wrong)
    try:
        response = await client.send_raw("GET", "/trustFramework/keySets")
    except GraphError as error:
        return error.code or type(error).__name__
    finally:
        await client.aclose()
    return f"a token was issued (GET answered {response.status})"


async def _connection(args: argparse.Namespace) -> GraphConnection:
    if args.tenant:
        from b2ckeys.conformance.tenant import tenant_connection

        return await tenant_connection(
            args.tenant, args.kubeconfig, args.context, args.operator_namespace
        )
    conn = Settings.from_env().graph
    if conn is None:
        raise CommandFailed(
            "no tenant configured: set AZURE_TENANT_ID, AZURE_CLIENT_ID and one of "
            "AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE "
            "(as for b2ckeys run), or pass --tenant"
        )
    return conn
