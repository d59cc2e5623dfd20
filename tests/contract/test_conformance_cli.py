"""`b2ckeys conformance` as a user runs it: the real CLI against a real `b2ckeys graph-emulator`.

On the emulator's default rules every row passes and nothing is left behind; with one rule
overridden exactly the rows the catalogue ties to that rule differ; `--plan` sends nothing; a
prefix that is not B2C's own is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
from kube_emulator_support import api_client, call

from b2ckeys.conformance.catalogue import RULES
from b2ckeys_emulators.kube.server import serve_kube_emulator

B2CKEYS = Path(sys.executable).parent / "b2ckeys"
FIRST_LINE = re.compile(r"^b2ckeys graph-emulator listening on (https://127\.0\.0\.1:\d+)\n$")
START_TIMEOUT_SECONDS = 20
# A whole conformance run against the emulator takes about 8 s here; a real tenant is slower.
RUN_TIMEOUT_SECONDS = 60
TENANT = "conformance-tenant"
WRITER_SECRET = "conformance-writer-4c1d9e"
READER_SECRET = "conformance-reader-8a27f0"
APPS = (
    f"writer:{WRITER_SECRET}:TrustFrameworkKeySet.ReadWrite.All",
    f"reader:{READER_SECRET}:TrustFrameworkKeySet.Read.All",
)
PREFIX = "B2C_1A_B2CKEYSCONFORMANCE_"
THROTTLING = "3.3-throttling"


@dataclass(frozen=True)
class Finished:
    code: int
    stdout: str
    stderr: str

    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.stdout)
        return parsed

    def results(self) -> dict[str, str]:
        return {row["id"]: row["result"] for row in self.document()["rows"]}


@asynccontextmanager
async def graph_emulator(tls_dir: Path, *rules: str) -> AsyncIterator[str]:
    args = ["--tls-dir", str(tls_dir), "--tenant-id", TENANT]
    for app in APPS:
        args += ["--app", app]
    for rule in rules:
        args += ["--rule", rule]
    process = await asyncio.create_subprocess_exec(
        str(B2CKEYS),
        "graph-emulator",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_SECONDS)
        match = FIRST_LINE.match(first.decode())
        assert match, first
        yield match.group(1)
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), START_TIMEOUT_SECONDS)


async def conformance(url: str, *args: str, tenant_env: bool = False) -> Finished:
    """The real CLI; with the writer's settings in the environment unless `tenant_env` says the
    tenant comes from the cluster (--tenant), when no AZURE_* setting is passed at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    if not tenant_env:
        env |= {
            "AZURE_TENANT_ID": TENANT,
            "AZURE_CLIENT_ID": "writer",
            "AZURE_CLIENT_SECRET": WRITER_SECRET,
            "AZURE_AUTHORITY_HOST": url,
            "B2CKEYS_GRAPH_BASE_URL": f"{url}/beta",
        }
    # SSL_CERT_FILE stays: the session's CA, which signed the emulator's certificate.
    process = await asyncio.create_subprocess_exec(
        str(B2CKEYS),
        "conformance",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_SECONDS)
    assert process.returncode is not None
    return Finished(process.returncode, stdout.decode(), stderr.decode())


READ_ONLY = ("--read-only-client-id", "reader", "--read-only-client-secret", READER_SECRET)


async def control(url: str, method: str, route: str, body: object = None) -> Any:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.request(method, f"{url}/_emulator/{route}", json=body)
        response.raise_for_status()
        return response.json()


async def left_behind(url: str) -> list[str]:
    key_sets = (await control(url, "GET", "keysets"))["value"]
    return [ks["id"] for ks in key_sets if PREFIX in ks["id"]]


async def test_every_rule_passes_on_the_emulator_and_nothing_is_left(
    emulator_ca_dir: Path, tmp_path: Path
) -> None:
    reader_secret_file = tmp_path / "reader-secret"
    reader_secret_file.write_text(READER_SECRET + "\n", encoding="utf-8")
    read_only = ("--read-only-client-id", "reader", "--read-only-client-secret-file")
    async with graph_emulator(emulator_ca_dir) as url:
        # The throttling row reports what a 429 carried; make the emulator throttle one read.
        fault = {"path": "getActiveKey", "method": "GET", "status": 429, "retry_after": "1"}
        await control(url, "POST", "faults", {**fault, "code": "AADB2C95043"})
        finished = await conformance(url, "--json", *read_only, str(reader_secret_file))
        leftovers = await left_behind(url)
    assert finished.code == 0, finished.stderr + finished.stdout
    document = finished.document()
    not_passed = {row["id"]: row for row in document["rows"] if row["result"] != "PASS"}
    assert not_passed == {}
    assert [row["id"] for row in document["rows"]][-1] == THROTTLING
    assert len(document["rows"]) == len(RULES)
    assert document["summary"] == {"PASS": len(RULES), "DIFFERS": 0, "SKIPPED": 0}
    assert leftovers == []
    assert document["cleanup"]["left"] == []
    assert document["cleanup"]["error"] is None
    assert any(i.endswith(".bak") for i in document["cleanup"]["deleted"])
    assert "only ids starting with B2C_1A_B2CKEYSCONFORMANCE_ are touched" in finished.stderr
    for secret in (WRITER_SECRET, READER_SECRET):
        assert secret not in finished.stdout + finished.stderr
    assert document["seconds"] < 30


def _rows_tied_to(field: str) -> set[str]:
    return {rule.id for rule in RULES if field in rule.fields}


@pytest.mark.parametrize(
    "override",
    [
        "duplicate_create_status=400",
        "refuse_aes_pkcs12=false",
        "wrap_key_v2_in_value=true",
        # B2C names the set B2C_1A_B2C_1A_...: outside the prefix, yet this run's to delete.
        "prefix_twice=true",
    ],
)
async def test_a_deliberate_deviation_differs_in_exactly_its_rows(
    emulator_ca_dir: Path, override: str
) -> None:
    field = override.split("=")[0]
    async with graph_emulator(emulator_ca_dir, override) as url:
        finished = await conformance(url, "--json")
        leftovers = await left_behind(url)
    assert finished.code == 1, finished.stderr
    results = finished.results()
    differs = {rule_id for rule_id, result in results.items() if result == "DIFFERS"}
    assert differs == _rows_tied_to(field) != set()
    # Without a read-only app, and never throttled, these are skipped, with the reason.
    skipped = {rule_id for rule_id, result in results.items() if result == "SKIPPED"}
    assert skipped == {"1-read-only", "4-token-error", THROTTLING}
    row = next(r for r in finished.document()["rows"] if r["id"] in differs)
    assert row["tenant"][field] != row["emulator"][field]
    assert field in row["emulator_rules"]
    assert leftovers == []


async def test_plan_sends_nothing_and_a_foreign_prefix_is_refused(emulator_ca_dir: Path) -> None:
    async with graph_emulator(emulator_ca_dir) as url:
        planned = await conformance(url, "--plan", *READ_ONLY)
        foreign = await conformance(url, "--prefix", "B2C_1A_", "--json")
        not_b2c = await conformance(url, "--prefix", "TokenSigning", "--json")
        requests = (await control(url, "GET", "requests"))["value"]
    assert planned.code == 0, planned.stderr
    assert requests == [], "neither --plan nor a refused prefix may send anything"
    for rule in RULES:
        assert f"\n{rule.id} [{rule.tag}]" in planned.stdout
    assert re.search(
        r"DELETE +/trustFramework/keySets/B2C_1A_B2CKEYSCONFORMANCE_\w+\.bak", planned.stdout
    )
    assert "GET    /trustFramework/keySets/B2C_1A_B2CKEYSCONFORMANCE_" in planned.stdout
    for refused in (foreign, not_b2c):
        assert refused.code == 2
        assert "--prefix must start with B2C_1A_" in refused.stderr
        assert refused.stdout == ""


async def test_tenant_takes_the_connection_from_a_b2ctenant(
    emulator_ca_dir: Path, tmp_path: Path
) -> None:
    secret = kubernetes.client.V1Secret(
        metadata=kubernetes.client.V1ObjectMeta(name="writer-credential", namespace="default"),
        data={"secret": base64.b64encode(WRITER_SECRET.encode()).decode()},
    )
    async with (
        serve_kube_emulator(kubeconfig=tmp_path / "kubeconfig") as kube,
        graph_emulator(emulator_ca_dir) as url,
    ):
        tenant = {
            "apiVersion": "b2ckeys.dev/v1alpha1",
            "kind": "B2CTenant",
            "metadata": {"name": "emulated", "namespace": "default"},
            "spec": {
                "tenantId": TENANT,
                "clientId": "writer",
                "auth": {
                    "clientSecret": {"secretRef": {"name": "writer-credential", "key": "secret"}}
                },
                "graphBaseUrl": f"{url}/beta",
                "authorityHost": url,
            },
        }
        with api_client(kube) as api:
            await call(kubernetes.client.CoreV1Api(api).create_namespaced_secret, "default", secret)
            custom = kubernetes.client.CustomObjectsApi(api)
            await call(
                custom.create_namespaced_custom_object,
                "b2ckeys.dev",
                "v1alpha1",
                "default",
                "b2ctenants",
                tenant,
            )
        args = ("--tenant", "default/emulated", "--kubeconfig", str(kube.kubeconfig))
        finished = await conformance(url, *args, "--only", "2.1", "--json", tenant_env=True)
        missing = await conformance(
            url, "--tenant", "default/absent", "--kubeconfig", str(kube.kubeconfig), tenant_env=True
        )
    assert finished.code == 0, finished.stderr
    document = finished.document()
    assert document["tenant_id"] == TENANT
    assert set(finished.results().values()) == {"PASS"}
    assert missing.code == 2
    assert "B2CTenant default/absent not found" in missing.stderr
