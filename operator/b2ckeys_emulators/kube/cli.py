"""`b2ckeys kube-emulator`: serve the embedded Kubernetes API until SIGTERM or SIGINT.

The first line on stdout is exactly `b2ckeys kube-emulator listening on URL`, printed once the
kubeconfig is written, so a parent process can wait for that line and then use the kubeconfig.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from b2ckeys_emulators.kube.server import serve_kube_emulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b2ckeys kube-emulator",
        description="Serve an embedded Kubernetes API (with the project's CRDs) on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks one")
    parser.add_argument(
        "--kubeconfig", type=Path, required=True, help="where to write a kubeconfig for it"
    )
    parser.add_argument(
        "--crd",
        dest="crds",
        type=Path,
        action="append",
        help="a CRD file or folder to serve instead of the project's crds/ (repeatable)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        asyncio.run(_serve(args.host, args.port, args.kubeconfig, args.crds))
    except ValueError as problem:  # e.g. a CRD the emulator does not accept
        print(f"b2ckeys kube-emulator: {problem}", file=sys.stderr, flush=True)
        return 1
    return 0


async def _serve(host: str, port: int, kubeconfig: Path, crds: list[Path] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve_kube_emulator(
        host=host, port=port, kubeconfig=kubeconfig, crd_paths=crds
    ) as kube:
        print(f"b2ckeys kube-emulator listening on {kube.url}", flush=True)
        await stop.wait()
