"""`kubectl b2ckeys` without a server: its tables, its reading of status, the plan as printed,
the sync-now value, its arguments, and the errors it gives before any request is made."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from b2ckeys import cli, kubectl_plugin, preview
from b2ckeys.formats import from_rfc3339
from b2ckeys.graph.client import RemoteKey
from b2ckeys.plan import DesiredCertificate, DesiredGenerated, DesiredSecret, decide
from b2ckeys.status import parse_status
from b2ckeys.tables import (
    b2c_key_table,
    format_time,
    keyset_table,
    render_table,
    shorten,
)

NOW = 1_800_000_000
KID = "rdUfnAq90jHi_8dQ3fS2r9dQx0mQ6bE1"  # longer than a table shows by default
X5T = "Y-Veq8WoquCKORIO3nEDa-Wwmts"


def body(name: str, namespace: str = "identity", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"keySetId": "TokenSigningKeyContainer", "source": {"generate": {}}},
        "status": status,
    }


SYNCED = body(
    "token-signing",
    keySetId="B2C_1A_TokenSigningKeyContainer",
    conditions=[{"type": "Ready", "status": "True", "reason": "Synced", "message": "uses it"}],
    activeKey={"kid": KID, "x5t": X5T, "expires": "2027-02-25T12:25:00Z", "kty": "RSA"},
    syncedKey={"kid": KID, "x5t": X5T, "kty": "RSA", "use": "sig"},
    keyCount=2,
    source="tlsSecret/token-signing-tls",
    lastSyncTime="2026-11-27T12:25:01Z",
)
NEW = {"metadata": {"name": "new", "namespace": "apps"}, "spec": {}}


# --- tables -------------------------------------------------------------------------------------


def test_render_table_pads_columns_and_rules_the_header() -> None:
    assert render_table(["A", "LONGER"], [["wide cell", "x"], ["b", ""]]) == (
        "A          LONGER\n---------  ------\nwide cell  x\nb"
    )


def test_render_table_of_no_rows_is_the_header() -> None:
    assert render_table(["NAME", "READY"], []) == "NAME  READY\n----  -----"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "-"), ("", "-"), ("short", "short"), ("x" * 14, "x" * 14), ("x" * 15, "x" * 13 + "…")],
)
def test_shorten(value: str | None, expected: str) -> None:
    assert shorten(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_800_000_000, "2027-01-15 08:00"),  # B2C's nbf/exp: epoch seconds
        ("2027-02-25T12:25:00Z", "2027-02-25 12:25"),  # status: RFC 3339
        (None, "-"),
        ("", "-"),
        (True, "-"),
    ],
)
def test_format_time(value: object, expected: str) -> None:
    assert format_time(value) == expected


def test_keyset_table_reads_status_only_and_shortens_kids() -> None:
    lines = keyset_table([SYNCED, NEW]).splitlines()

    assert lines[0].split() == [
        "NAME", "READY", "REASON", "KEYSET", "ACTIVE-KID", "X5T", "EXPIRES", "SYNCED-KID"
    ]  # fmt: skip
    assert lines[2].split() == [
        "token-signing", "True", "Synced", "B2C_1A_TokenSigningKeyContainer",
        KID[:13] + "…", X5T[:13] + "…", "2027-02-25", "12:25", KID[:13] + "…",
    ]  # fmt: skip
    # A key set the operator has not reached yet: every column says so.
    assert lines[3].split() == ["new", *["-"] * 7]


def test_keyset_table_wide_with_namespaces() -> None:
    lines = keyset_table([SYNCED, NEW], wide=True, namespaces=True).splitlines()

    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert lines[0].split()[-4:] == ["SOURCE", "MODE", "KEYS", "LAST-SYNC"]
    assert lines[2].split() == [
        "identity", "token-signing", "True", "Synced", "B2C_1A_TokenSigningKeyContainer",
        KID, X5T, "2027-02-25", "12:25", KID,
        "tlsSecret/token-signing-tls", "Sync", "2", "2026-11-27", "12:25",
    ]  # fmt: skip
    assert lines[3].split() == ["apps", "new", *["-"] * 7, "-", "Sync", "-", "-"]


def test_b2c_key_table_marks_the_active_key_and_shows_an_empty_key_set() -> None:
    keys = [
        {"kid": "old", "kty": "RSA", "use": "sig", "nbf": NOW - 10, "exp": NOW + 10},
        {"kid": KID, "kty": "RSA", "use": "sig", "x5t": X5T, "status": "enabled"},
    ]

    lines = b2c_key_table(
        [("B2C_1A_Signing", keys, KID), ("B2C_1A_Empty", [], None)],
        owners=["identity/signing", "identity/empty"],
        wide=True,
    ).splitlines()

    assert lines[0].split() == [
        "RESOURCE", "B2C", "KEYSET", "KID", "KTY", "USE", "X5T", "NOT-BEFORE", "EXPIRES",
        "STATUS", "ACTIVE",
    ]  # fmt: skip
    assert lines[2].split() == [
        "identity/signing", "B2C_1A_Signing", "old", "RSA", "sig", "-",
        "2027-01-15", "07:59", "2027-01-15", "08:00", "-",
    ]  # fmt: skip
    assert lines[3].split() == [
        "identity/signing", "B2C_1A_Signing", KID, "RSA", "sig", X5T, "-", "-", "enabled", "yes"
    ]  # fmt: skip
    assert lines[4].split() == ["identity/empty", "B2C_1A_Empty", *["-"] * 7]


# --- status as plan reads it --------------------------------------------------------------------


def test_keys_from_status_are_the_synced_and_active_keys_once_each() -> None:
    keys = preview.keys_from_status(SYNCED["status"])

    assert keys == [RemoteKey(kid=KID, kty="RSA", use="sig", x5t=X5T)]


def test_keys_from_status_keep_the_active_keys_dates_and_state() -> None:
    status = {
        "keySetId": "B2C_1A_X",
        "activeKey": {
            "kid": "a",
            "kty": "oct",
            "use": "enc",
            "notBefore": "2027-01-15T08:00:00Z",
            "expires": "2028-01-15T08:00:00Z",
            "status": "disabled",
        },
    }

    (active,) = preview.keys_from_status(status) or []

    assert active == RemoteKey(
        kid="a",
        kty="oct",
        use="enc",
        status="disabled",
        nbf=from_rfc3339("2027-01-15T08:00:00Z"),
        exp=from_rfc3339("2028-01-15T08:00:00Z"),
    )


def test_a_status_naming_no_key_set_means_the_key_set_is_not_known_to_exist() -> None:
    assert preview.keys_from_status({}) is None
    assert preview.keys_from_status({"keySetId": "B2C_1A_X"}) == []


# --- the plan as printed ------------------------------------------------------------------------

CERT = DesiredCertificate("uploadPkcs12", "x5t-new", "s256-new", NOW - 3600, NOW + 86400)


def plan_of(decision_keys: list[RemoteKey] | None, status: dict[str, Any]) -> preview.Preview:
    view = parse_status(status)
    return preview.Preview(
        "identity/token-signing",
        "status",
        status.get("keySetId"),
        "tlsSecret/token-signing-tls",
        preview.describe_desired(CERT),
        decide(CERT, decision_keys, view, NOW),
        notes=("an operator note",),
        compared_with="status as of then",
    )


def test_a_plan_lists_the_writes_in_order() -> None:
    text = preview.render(plan_of(None, {}))

    assert text.splitlines() == [
        "TrustFrameworkKeySet identity/token-signing",
        "  B2C key set:  (none yet)",
        "  source:       tlsSecret/token-signing-tls",
        "  source holds: certificate x5t x5t-new, valid 2027-01-15T07:00:00Z to "
        "2027-01-16T08:00:00Z (uploadPkcs12)",
        "  compared with status as of then",
        "  note: an operator note",
        "Sync mode would write, in this order:",
        "  1. createKeySet",
        "  2. uploadPkcs12 x5t=x5t-new (key set missing in B2C)",
    ]


def test_a_plan_with_nothing_to_do_names_the_key_already_there() -> None:
    present = [RemoteKey(kid="k1", kty="RSA", use="sig", x5t="x5t-new")]

    text = preview.render(plan_of(present, {"keySetId": "B2C_1A_TokenSigning"}))

    assert text.splitlines()[-1] == (
        "Nothing to do: the source is key k1 that status records in B2C_1A_TokenSigning "
        "(x5t x5t-new)"
    )


def test_a_plan_for_an_unusable_source_says_why_nothing_is_written() -> None:
    stuck = preview.Preview(
        "identity/x", "graph", None, "secret/app", None, None, problem="SourceNotFound: gone"
    )

    assert preview.render(stuck).splitlines()[-1] == (
        "Nothing to do: Sync mode would write nothing, because SourceNotFound: gone"
    )


@pytest.mark.parametrize(
    ("desired", "expected"),
    [
        (
            DesiredSecret("fp", True, False, 0.0, None, None),
            "a string secret whose value status.sourceFingerprint describes",
        ),
        (
            DesiredSecret("fp", False, False, 0.0, None, None),
            "a string secret whose value status.sourceFingerprint does not describe",
        ),
        (DesiredGenerated("oct", "enc", 0.0, None, None), "a oct key for enc generated by B2C"),
    ],
)
def test_a_source_is_described_without_its_value_or_fingerprint(
    desired: DesiredSecret | DesiredGenerated, expected: str
) -> None:
    described = preview.describe_desired(desired)

    assert described == expected
    assert "fp" not in described.split()


# --- sync ---------------------------------------------------------------------------------------


def test_the_force_sync_value_is_rfc3339_to_the_microsecond() -> None:
    at = datetime(2026, 11, 28, 10, 45, 6, 123456, tzinfo=UTC)

    value = kubectl_plugin.force_sync_value(at)

    assert value == "2026-11-28T10:45:06.123456Z"
    assert datetime.fromisoformat(value) == at
    # Two syncs within a second are still two new values.
    assert kubectl_plugin.force_sync_value() != kubectl_plugin.force_sync_value()


BEFORE = {"lastSyncTime": "2026-11-28T10:00:00Z", "conditions": [{"type": "Ready"}]}


@pytest.mark.parametrize(
    ("current", "reconciled"),
    [
        (BEFORE, False),
        # The intent the operator records before an upload: the reconcile is still going.
        ({**BEFORE, "pendingWrite": {"action": "uploadSecret"}, "keySetId": "B2C_1A_X"}, False),
        ({**BEFORE, "lastSyncTime": "2026-11-28T10:00:05Z"}, True),
        ({**BEFORE, "conditions": [{"type": "Ready", "reason": "GraphError"}]}, True),
        ({**BEFORE, "observedGeneration": 2}, True),
    ],
)
def test_sync_wait_looks_for_a_finished_reconcile(
    current: dict[str, Any], reconciled: bool
) -> None:
    assert kubectl_plugin.reconciled_since(BEFORE, current) is reconciled


# --- arguments and early errors ---------------------------------------------------------------


def test_status_takes_a_namespace_or_all_namespaces_not_both(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        kubectl_plugin.status_parser().parse_args(["-n", "identity", "-A"])

    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_sync_reads_its_timeout_as_a_duration(capsys: pytest.CaptureFixture[str]) -> None:
    args = kubectl_plugin.sync_parser().parse_args(["ks", "--wait", "--timeout", "1m30s"])

    assert (args.name, args.wait, args.timeout) == ("ks", True, 90.0)
    with pytest.raises(SystemExit):
        kubectl_plugin.sync_parser().parse_args(["ks", "--timeout", "soon"])
    assert "is not a duration" in capsys.readouterr().err


def test_the_kubectl_name_shows_in_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/kubectl-b2ckeys"])
    assert kubectl_plugin.status_parser().prog == "kubectl b2ckeys status"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/b2ckeys"])
    assert kubectl_plugin.plan_parser().prog == "b2ckeys plan"
    for command in ("status", "plan", "sync"):
        assert command in cli.SUBCOMMANDS


def test_a_missing_kubeconfig_is_one_line_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = kubectl_plugin.status(["--kubeconfig", str(tmp_path / "absent")])

    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "error: cannot use the kubeconfig" in err
    assert "(pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config)" in err


def test_a_context_the_kubeconfig_lacks_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = write_kubeconfig(tmp_path)

    code = kubectl_plugin.status(["--kubeconfig", str(kubeconfig), "--context", "staging"])

    assert code == 1
    assert "staging" in capsys.readouterr().err


def test_graph_without_credentials_is_refused_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    # Nothing listens there: a request would fail as unreachable, not as missing credentials.
    kubeconfig = write_kubeconfig(tmp_path)

    code = kubectl_plugin.plan(["ks", "--kubeconfig", str(kubeconfig), "--graph"])

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("b2ckeys plan: error: --graph reads B2C with the operator's Graph")
    assert "cannot reach" not in err


def write_kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "dev",
            }
        ),
        encoding="utf-8",
    )
    return path


def test_an_api_server_that_does_not_answer_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 1 on loopback: nothing listens, so the connection is refused at once.
    kubeconfig = write_kubeconfig(tmp_path)

    code = kubectl_plugin.status(["--kubeconfig", str(kubeconfig), "-n", "identity"])

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("b2ckeys status: error: cannot reach the API server: GET /apis/")
    assert TRACEBACK not in err


TRACEBACK = "Traceback (most recent call last)"
