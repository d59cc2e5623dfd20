"""`kubectl b2ckeys status|plan|sync` (also `b2ckeys status|plan|sync`), in the spirit of cmctl.

Runs as the person who types it: their kubeconfig (`--kubeconfig`, else $KUBECONFIG, else
~/.kube/config; `--context`) and their RBAC, through `b2ckeys.kube.api`. Only `--graph` needs
more: the operator's Graph credentials, from the same AZURE_* variables `b2ckeys run` reads.
Nothing here writes to B2C, and the only Kubernetes write is `sync`'s annotation (`disable`
and `enable`, in b2ckeys.key_commands, write an annotation the operator carries out).

Every failure a person can act on (a missing resource, an RBAC refusal, no kubeconfig, no Graph
credentials) is one line on stderr and exit code 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar

from b2ckeys.cli import program_name
from b2ckeys.graph.client import GraphError, RemoteKey, TenantClient
from b2ckeys.kube.api import KubeApi, KubeError
from b2ckeys.model import KeySetResource
from b2ckeys.settings import (
    API_GROUP,
    FORCE_SYNC_ANNOTATION,
    KEYSET_PLURAL,
    Settings,
    SettingsError,
    parse_duration,
)
from b2ckeys.tables import b2c_key_table, keyset_table, ready_condition

_T = TypeVar("_T")
RESOURCE = f"{KEYSET_PLURAL}.{API_GROUP}"
KIND = "TrustFrameworkKeySet"
# How often `sync --wait` looks at the key set: a reconcile takes well under a second.
WAIT_POLL_SECONDS = 0.2
NO_GRAPH_CREDENTIALS = (
    "--graph reads B2C with the operator's Graph credentials, and none are set: export "
    "AZURE_TENANT_ID, AZURE_CLIENT_ID and one of AZURE_CLIENT_SECRET, "
    "AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE as in the operator's Deployment "
    "(plus AZURE_AUTHORITY_HOST and B2CKEYS_GRAPH_BASE_URL outside the public cloud)"
)


class CommandFailed(Exception):
    """What went wrong, said so that a person can act on it (printed without a traceback)."""


# --- arguments ----------------------------------------------------------------------------------


def _parser(command: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{program_name()} {command}",
        description=description,
        epilog="Kubernetes access is yours: --kubeconfig, else $KUBECONFIG, else ~/.kube/config.",
    )
    parser.add_argument("--kubeconfig", help="the kubeconfig file to use")
    parser.add_argument("--context", help="the kubeconfig context to use")
    return parser


def _namespace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--namespace", help="the namespace (default: the context's, else default)"
    )


def _wait_options(parser: argparse.ArgumentParser, until: str) -> None:
    parser.add_argument("--wait", action="store_true", help=f"wait until {until}")
    parser.add_argument(
        "--timeout",
        default="60s",
        type=_duration,
        help="how long --wait waits, e.g. 30s or 2m (default 60s)",
    )


def status_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "status",
        "Each TrustFrameworkKeySet, its Ready condition, the key B2C uses and when it expires, "
        "and the key it synced, from status. --graph also lists every key B2C holds.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", help="the namespace (default: the context's, else default)"
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="key sets in every namespace"
    )
    parser.add_argument("-o", "--output", choices=("wide", "json"), help="wide or json")
    parser.add_argument(
        "--graph",
        action="store_true",
        help="also read each key set from B2C (needs the operator's AZURE_* credentials)",
    )
    return parser


def plan_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "plan",
        "What Sync mode would write to B2C for one key set now, written nowhere. Without "
        "--graph, against what status says B2C holds; with --graph, against B2C itself.",
    )
    parser.add_argument("name", help="the TrustFrameworkKeySet")
    _namespace_option(parser)
    parser.add_argument(
        "--graph",
        action="store_true",
        help="read the key set from B2C (needs the operator's AZURE_* credentials)",
    )
    return parser


def sync_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "sync",
        f"Ask the operator to reconcile a key set at once: sets the {FORCE_SYNC_ANNOTATION} "
        "annotation to the current time.",
    )
    parser.add_argument("name", help="the TrustFrameworkKeySet")
    _namespace_option(parser)
    _wait_options(parser, "the operator has written its status")
    return parser


def check_tenant_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "check-tenant",
        "Verify a B2CTenant's (or, with --cluster, a ClusterB2CTenant's) credentials as the "
        "operator does: read its Secret, get a Graph token, list the key sets, and say which "
        "permission the token carries. Nothing is written.",
    )
    parser.add_argument("name", help="the B2CTenant (or ClusterB2CTenant with --cluster)")
    _namespace_option(parser)
    parser.add_argument(
        "--cluster", action="store_true", help="a ClusterB2CTenant (cluster-scoped)"
    )
    parser.add_argument(
        "--operator-namespace",
        default="b2ckeys-system",
        help="where a ClusterB2CTenant's credential Secrets live (default b2ckeys-system)",
    )
    return parser


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# --- Kubernetes, with errors a person can act on -----------------------------------------------


def _connect(args: argparse.Namespace) -> tuple[KubeApi, str]:
    """The API as the user, and the namespace to use (-n, else the context's)."""
    try:
        kube = KubeApi.connect_as_user(args.kubeconfig, args.context)
        namespace = getattr(args, "namespace", None) or KubeApi.kubeconfig_namespace(
            args.kubeconfig, args.context
        )
    except KubeError as e:
        raise CommandFailed(
            f"{_said(e)} (pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config)"
        ) from None
    return kube, namespace


def _said(error: KubeError) -> str:
    """The API server's (or the kubeconfig loader's) message, without our status prefix."""
    return str(error).split("] ", 1)[-1]


async def _kube(call: Awaitable[_T], verb: str, what: str, where: str) -> _T:
    """One Kubernetes call; KubeError becomes a sentence naming what was refused and why."""
    try:
        return await call
    except KubeError as e:
        message = _said(e)
        if e.status == 403:
            raise CommandFailed(
                f"forbidden: you may not {verb} {what} {where}. The API server said: {message}. "
                f"Ask for a Role (or ClusterRole) that grants {verb} on {what}"
            ) from None
        if e.status == 401:
            raise CommandFailed(
                f"the API server did not accept your credentials ({message}); log in again or "
                "check the kubeconfig's user"
            ) from None
        if e.status == 0:
            raise CommandFailed(f"cannot reach the API server: {message}") from None
        raise CommandFailed(f"{verb} {what} {where} failed: {message}") from None


async def _read_keyset(kube: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    body = await _kube(
        kube.read_keyset_body(namespace, name), "get", RESOURCE, f"in namespace {namespace}"
    )
    if body is None:
        raise CommandFailed(
            f'{KIND} "{name}" not found in namespace {namespace} '
            f"(kubectl get {KEYSET_PLURAL} -n {namespace} lists them)"
        )
    return body


# --- Graph --------------------------------------------------------------------------------------


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as e:
        raise CommandFailed(str(e)) from None


def _require_graph_credentials(settings: Settings) -> None:
    """Refuse --graph before anything is read when no credentials are set."""
    if settings.graph is None:
        raise CommandFailed(NO_GRAPH_CREDENTIALS)


def _graph_client(settings: Settings) -> TenantClient:
    _require_graph_credentials(settings)
    assert settings.graph is not None
    # Imported only here: the Graph SDK takes seconds to load and the other commands skip it.
    from b2ckeys.graph.msgraph import MsGraphKeySetClient

    return MsGraphKeySetClient.from_connection(settings.graph)


def _graph_failed(error: GraphError, key_set_id: str) -> CommandFailed:
    # The operator's own words for a Graph failure, which say what to check.
    from b2ckeys.conditions import outcome_for_graph_error

    outcome, _ = outcome_for_graph_error(error, key_set_id, None)
    return CommandFailed(f"reading B2C failed ({outcome.reason.value}): {outcome.message}")


def _public_key(key: RemoteKey) -> dict[str, Any]:
    """B2C's public members of a key that the tables show (not the certificate chain)."""
    fields = asdict(key)
    return {k: fields[k] for k in ("kid", "kty", "use", "status", "x5t", "nbf", "exp")}


# --- status -------------------------------------------------------------------------------------


def status_document(bodies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`status -o json`: each key set's identity and status as served (status only: no spec)."""
    items = []
    for body in bodies:
        meta = body.get("metadata") or {}
        items.append(
            {
                "namespace": meta.get("namespace"),
                "name": meta.get("name"),
                "ready": dict(ready_condition(body)),
                "status": dict(body.get("status") or {}),
            }
        )
    return {"items": items}


async def _b2c_key_sets(
    kube: KubeApi, settings: Settings, bodies: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str, list[dict[str, Any]], str | None]]:
    """(resource, B2C key set id, its keys, the active kid) for each key set, read from B2C."""
    from b2ckeys.preview import read_b2c, reader

    graph = _graph_client(settings)
    found: list[tuple[str, str, list[dict[str, Any]], str | None]] = []
    try:
        reads = reader(settings, kube, graph)
        now = int(time.time())
        for body in bodies:
            resource = KeySetResource.from_body(body)
            owner = f"{resource.ref.namespace}/{resource.ref.name}"
            spec = resource.spec
            if spec is None or spec.tenant_ref is not None:
                continue  # unparseable, or another tenant's: not the operator's default tenant
            try:
                remote, active = await read_b2c(reads, graph, resource, now)
            except GraphError as error:
                raise _graph_failed(error, spec.key_set_id) from None
            if remote is None:
                found.append((owner, f"{spec.candidate_ids[0]} (absent)", [], None))
            else:
                keys = [_public_key(k) for k in remote.keys]
                found.append((owner, remote.id, keys, active.kid if active else None))
    finally:
        await graph.aclose()
    return found


async def run_status(args: argparse.Namespace) -> str:
    kube, namespace = _connect(args)
    try:
        settings = _settings() if args.graph else None
        if settings is not None:
            _require_graph_credentials(settings)
        scope = None if args.all_namespaces else namespace
        where = "in any namespace (-A)" if scope is None else f"in namespace {scope}"
        bodies = await _kube(kube.list_keyset_bodies(scope), "list", RESOURCE, where)
        b2c = await _b2c_key_sets(kube, settings, bodies) if settings is not None else []
    finally:
        kube.close()
    if args.output == "json":
        document = status_document(bodies)
        if settings is not None:
            by_owner = {owner: (ks, keys, active) for owner, ks, keys, active in b2c}
            for item in document["items"]:
                owner = f"{item['namespace']}/{item['name']}"
                if owner in by_owner:
                    key_set_id, keys, active = by_owner[owner]
                    item["b2c"] = {"keySetId": key_set_id, "keys": keys, "activeKid": active}
        return json.dumps(document, indent=2)
    if not bodies:
        return f"No {KIND}s found {where}."
    wide = args.output == "wide"
    text = keyset_table(bodies, wide=wide, namespaces=scope is None)
    if settings is not None:
        table = b2c_key_table(
            [(ks, keys, active) for _, ks, keys, active in b2c],
            wide=wide,
            owners=[owner for owner, _, _, _ in b2c],
        )
        text += f"\n\nWhat B2C holds (read now from Graph)\n{table}"
    return text


# --- plan ---------------------------------------------------------------------------------------


async def run_plan(args: argparse.Namespace) -> str:
    from b2ckeys import preview

    kube, namespace = _connect(args)
    settings = _settings()
    if args.graph:
        _require_graph_credentials(settings)
    try:
        resource = KeySetResource.from_body(await _read_keyset(kube, namespace, args.name))
        if not args.graph:
            result = await _reading_sources(preview.from_status(kube, settings, resource))
        else:
            graph = _graph_client(settings)
            try:
                result = await _reading_sources(preview.from_graph(kube, settings, graph, resource))
            except GraphError as error:
                raise _graph_failed(error, resource.status.key_set_id or args.name) from None
            finally:
                await graph.aclose()
    finally:
        kube.close()
    return preview.render(result)


async def _reading_sources(call: Awaitable[_T]) -> _T:
    # The operator reads a key set's Secret or ConfigMap; so does plan, with the user's RBAC.
    return await _kube(call, "get", "secrets/configmaps", "referenced by the key set's source")


# --- sync ---------------------------------------------------------------------------------------


def force_sync_value(now: datetime | None = None) -> str:
    """RFC 3339 in UTC to the microsecond: two syncs within one second still differ, and each
    new value is what makes the operator reconcile."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# A reconcile that will write to B2C first records its intent (these two members alone); the
# reconcile is over once anything else in status changed.
_INTENT_MEMBERS = frozenset({"pendingWrite", "keySetId"})


def reconciled_since(before: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether the operator finished a reconcile that wrote status between the two (the Ready
    condition, lastSyncTime, observedGeneration or what B2C holds changed), not only recorded
    a write it is about to make."""

    def settled(status: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in status.items() if k not in _INTENT_MEMBERS}

    return settled(before) != settled(current)


def describe_ready(body: Mapping[str, Any]) -> str:
    ready = ready_condition(body)
    if not ready:
        return "no Ready condition yet"
    return f"Ready={ready.get('status')} {ready.get('reason')}: {ready.get('message')}"


async def run_sync(args: argparse.Namespace) -> str:
    kube, namespace = _connect(args)
    key = f"{namespace}/{args.name}"
    try:
        value = force_sync_value()
        stored = await _kube(
            kube.annotate_keyset(namespace, args.name, {FORCE_SYNC_ANNOTATION: value}),
            "patch",
            RESOURCE,
            f"in namespace {namespace}",
        )
        if stored is None:
            raise CommandFailed(f'{KIND} "{args.name}" not found in namespace {namespace}')
        said = f"{KIND} {key}: sync requested ({FORCE_SYNC_ANNOTATION}={value})"
        if not args.wait:
            return said
        before, current = stored.get("status") or {}, stored
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(WAIT_POLL_SECONDS)
            current = await _read_keyset(kube, namespace, args.name)
            if reconciled_since(before, current.get("status") or {}):
                return f"{said}\nreconciled: {describe_ready(current)}"
    finally:
        kube.close()
    raise CommandFailed(
        f"{said}, but its status did not change within {args.timeout:g}s. The operator writes "
        "status only when something changed, so a sync that finds nothing to do leaves no trace; "
        f"if it should have changed, check that the operator runs ({describe_ready(current)})"
    )


async def run_check_tenant(args: argparse.Namespace) -> str:
    from dataclasses import replace

    from b2ckeys.graph.msgraph import MsGraphKeySetClient
    from b2ckeys.tenant_access import TenantClients
    from b2ckeys.tenants import TenantKey

    kube, namespace = _connect(args)
    key = (
        TenantKey("ClusterB2CTenant", "", args.name)
        if args.cluster
        else TenantKey("B2CTenant", namespace, args.name)
    )
    where = "in the cluster" if args.cluster else f"in namespace {namespace}"
    plural = "clusterb2ctenants" if args.cluster else "b2ctenants"
    try:
        tenant = await _kube(kube.read_tenant(key), "get", f"{plural}.b2ckeys.dev", where)
        if tenant is None:
            raise CommandFailed(f"{key} not found (kubectl get {plural} lists them)")
        # The operator's own settings, with the user's view of where a cluster tenant's Secrets
        # live; reading them needs the user's RBAC on that namespace, as any Secret read does.
        settings = replace(_settings(), operator_namespace=args.operator_namespace)
        tenants = TenantClients(settings, kube, None, MsGraphKeySetClient.from_connection)
        try:
            verdict = await _kube(tenants.verify(tenant), "get", "secrets", "for the tenant")
        finally:
            await tenants.aclose()
    finally:
        kube.close()
    reported = tenant.status.ready
    operator_says = (
        f"; the operator last reported {reported.get('reason')}" if reported.get("reason") else ""
    )
    permission = f" (permission {verdict.permission})" if verdict.permission else ""
    line = f"{key}: {verdict.reason}{permission}: {verdict.message}{operator_says}"
    if not verdict.ready:
        raise CommandFailed(line)
    return line


# --- entry points -------------------------------------------------------------------------------


def _main(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, str]],
    argv: Sequence[str],
) -> int:
    args = parser.parse_args(list(argv))
    # The command says every failure itself, once; the libraries' own log lines (azure-identity
    # warns of each failed token request) would repeat it in another voice.
    disabled = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        print(asyncio.run(run(args)))
    except CommandFailed as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    finally:
        logging.disable(disabled)
    return 0


def status(argv: Sequence[str]) -> int:
    return _main(status_parser(), run_status, argv)


def plan(argv: Sequence[str]) -> int:
    return _main(plan_parser(), run_plan, argv)


def sync(argv: Sequence[str]) -> int:
    return _main(sync_parser(), run_sync, argv)


def check_tenant(argv: Sequence[str]) -> int:
    return _main(check_tenant_parser(), run_check_tenant, argv)
