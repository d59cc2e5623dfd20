"""`kubectl b2ckeys disable|enable NAME --kid KID` (also `b2ckeys disable|enable`): the
emergency path to take a key out of rotation (a compromised key) or put it back.

The command writes to Kubernetes only, as the person who types it: the
b2ckeys.dev/key-status-request annotation (JSON: a new request id, the kid, the status asked
for) plus the sync-now annotation so the operator looks at once. The operator, which holds the
Graph credentials, carries the request out once (keys_v2 PATCH), refuses to disable the only
usable key, and reports in status.keyStatusRequest; `--wait` waits for that report. So RBAC
(patch on trustframeworkkeysets) and the audit log stay Kubernetes', and an annotation is not
a spec field Argo CD would revert or a request that a restart would repeat: status records the
id it carried out.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from b2ckeys.kubectl_plugin import (
    KIND,
    RESOURCE,
    WAIT_POLL_SECONDS,
    CommandFailed,
    _connect,
    _kube,
    _main,
    _namespace_option,
    _parser,
    _read_keyset,
    _wait_options,
    force_sync_value,
)
from b2ckeys.model import KEY_STATUS_ANNOTATION
from b2ckeys.retirement import KeyStatusName, KeyStatusRequest
from b2ckeys.settings import FORCE_SYNC_ANNOTATION


def key_status_parser(command: str) -> argparse.ArgumentParser:
    doing = "Disable" if command == "disable" else "Enable"
    parser = _parser(
        command,
        f"{doing} one key of a key set in B2C (keys_v2) through the operator: writes the "
        f"{KEY_STATUS_ANNOTATION} annotation; the operator carries it out once and reports in "
        "status.keyStatusRequest. Disabling the only usable key is refused.",
    )
    parser.add_argument("name", help="the TrustFrameworkKeySet")
    _namespace_option(parser)
    parser.add_argument(
        "--kid", required=True, help="the key (kubectl b2ckeys status --graph lists them)"
    )
    _wait_options(parser, "the operator has reported the result")
    return parser


def request_result(body: Mapping[str, Any], request_id: str) -> Mapping[str, Any] | None:
    """status.keyStatusRequest once it reports this request."""
    reported = (body.get("status") or {}).get("keyStatusRequest") or {}
    return reported if reported.get("id") == request_id else None


async def run_key_status(args: argparse.Namespace, wanted: KeyStatusName) -> str:
    if not args.kid.strip():
        raise CommandFailed("--kid needs a key id (kubectl b2ckeys status --graph lists them)")
    kube, namespace = _connect(args)
    key = f"{namespace}/{args.name}"
    request = KeyStatusRequest(force_sync_value(), args.kid, wanted)
    verb = "disable" if wanted == "disabled" else "enable"
    try:
        stored = await _kube(
            kube.annotate_keyset(
                namespace,
                args.name,
                {
                    KEY_STATUS_ANNOTATION: request.to_annotation(),
                    # A new value of this one is what makes the operator look at once.
                    FORCE_SYNC_ANNOTATION: request.id,
                },
            ),
            "patch",
            RESOURCE,
            f"in namespace {namespace}",
        )
        if stored is None:
            raise CommandFailed(f'{KIND} "{args.name}" not found in namespace {namespace}')
        said = f"{KIND} {key}: asked the operator to {verb} key {args.kid} (request {request.id})"
        if not args.wait:
            return said
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(WAIT_POLL_SECONDS)
            reported = request_result(await _read_keyset(kube, namespace, args.name), request.id)
            if reported is None:
                continue
            line = f"{said}\n{reported.get('result')}: {reported.get('message')}"
            if reported.get("result") != "Done":
                raise CommandFailed(line)
            return line
    finally:
        kube.close()
    raise CommandFailed(
        f"{said}, but the operator did not report it within {args.timeout:g}s; check that the "
        f"operator runs, then status.keyStatusRequest of {key}"
    )


async def _disable(args: argparse.Namespace) -> str:
    return await run_key_status(args, "disabled")


async def _enable(args: argparse.Namespace) -> str:
    return await run_key_status(args, "enabled")


def _kid_joined(argv: Sequence[str]) -> list[str]:
    """`--kid -x...` as `--kid=-x...`: a kid is base64url, so one in 64 starts with "-",
    which argparse would take for an option ("expected one argument")."""
    joined: list[str] = []
    args = iter(argv)
    for arg in args:
        value = next(args, None) if arg == "--kid" else None
        joined.append(f"--kid={value}" if value is not None else arg)
    return joined


def disable(argv: Sequence[str]) -> int:
    return _main(key_status_parser("disable"), _disable, _kid_joined(argv))


def enable(argv: Sequence[str]) -> int:
    return _main(key_status_parser("enable"), _enable, _kid_joined(argv))
