"""A kubeconfig for the emulator: its URL, a placeholder bearer credential, one context."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

CONTEXT_NAME = "b2ckeys-kube-emulator"
# The emulator accepts any bearer credential; clients only need one to be configured.
_PLACEHOLDER_BEARER = "b2ckeys-kube-emulator"


def kubeconfig_text(server_url: str, *, namespace: str = "default") -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT_NAME, "cluster": {"server": server_url}}],
        "users": [{"name": CONTEXT_NAME, "user": {"token": _PLACEHOLDER_BEARER}}],
        "contexts": [
            {
                "name": CONTEXT_NAME,
                "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_kubeconfig(path: Path, server_url: str) -> None:
    """Write atomically, so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    # Owner-only, as kubectl writes kubeconfigs (the credential is a placeholder, but habits).
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(kubeconfig_text(server_url))
    os.replace(partial, path)
