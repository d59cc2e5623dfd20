"""`b2ckeys run`: the operator process."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Sequence

import kopf

from b2ckeys.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b2ckeys run",
        description="Keep Azure AD B2C policy key sets in sync with TrustFrameworkKeySets.",
        epilog="Graph credentials come from AZURE_TENANT_ID, AZURE_CLIENT_ID and one of "
        "AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE "
        "(plus AZURE_AUTHORITY_HOST, B2CKEYS_GRAPH_BASE_URL); tuning from B2CKEYS_* variables "
        "(see the README).",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="serve this namespace (repeatable)"
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="serve every namespace (the default)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve /metrics and /readyz here (default: B2CKEYS_METRICS_ADDRESS or 0.0.0.0:8081)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        metavar="NS",
        help="where the leader Lease lives (default: POD_NAMESPACE, the pod's own namespace, "
        "else `default`); for running outside a cluster",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"b2ckeys run: {e}", file=sys.stderr)
        return 2
    # Leader election and metrics hook: the flags win over the environment.
    if args.metrics_address:
        settings = dataclasses.replace(settings, metrics_address=args.metrics_address)
    if args.leader_election_namespace:
        settings = dataclasses.replace(settings, operator_namespace=args.leader_election_namespace)
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if settings.json_logs else kopf.LogFormat.PLAIN,
    )
    if not args.verbose:
        # A line per HTTP call and per token lookup, and one per routed watch event, would
        # drown what the operator itself says (uploads, refusals, backoffs). --verbose shows all.
        for chatty in ("httpx", "azure.identity", "azure.core", "kopf.objects"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    import b2ckeys.handlers  # noqa: F401  (registers the handlers with Kopf's default registry)

    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=list(args.namespace),
            standalone=True,
            liveness_endpoint=args.liveness,
            memo=kopf.Memo(settings=settings),
        )
    )
    return 0
