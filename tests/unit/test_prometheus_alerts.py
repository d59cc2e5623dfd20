"""deploy/prometheus: the PrometheusRule's alerts, checked and unit-tested by the real promtool.

promtool reads plain rule files; the PrometheusRule's spec.groups is one, so it is written out
here (no second copy to keep in step) beside a copy of deploy/prometheus/tests/alerts.test.yaml.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from go_tools import tool_binary

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_RULE = ROOT / "deploy" / "prometheus" / "prometheusrule.yaml"
UNIT_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "alerts.test.yaml"
RULES_FILE_NAME = "b2ckeys-rules.yaml"  # what alerts.test.yaml's rule_files names

# The operator's metric names (/work/brief contracts: "Metrics and readiness HTTP server").
CONTRACT_METRICS = {
    "b2ckeys_keyset_active_key_expiration_timestamp_seconds",
    "b2ckeys_keyset_active_key_not_before_timestamp_seconds",
    "b2ckeys_keyset_keys",
    "b2ckeys_keyset_successor_not_before_timestamp_seconds",
    "b2ckeys_keyset_ready_status",
    "b2ckeys_keyset_last_sync_timestamp_seconds",
    "b2ckeys_uploads_total",
    "b2ckeys_reconciles_total",
    "b2ckeys_graph_requests_total",
    "b2ckeys_graph_request_duration_seconds",
    "b2ckeys_graph_throttled_total",
    "b2ckeys_kube_api_errors_total",
    "b2ckeys_leader",
}

PROMTOOL_TIMEOUT_SECONDS = 120


def _rule() -> dict[str, Any]:
    rule: dict[str, Any] = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    return rule


def _alerts() -> list[dict[str, Any]]:
    return [r for group in _rule()["spec"]["groups"] for r in group["rules"] if "alert" in r]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool_binary("promtool")), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=PROMTOOL_TIMEOUT_SECONDS,
    )


@pytest.fixture
def rule_dir(tmp_path: Path) -> Path:
    """The plain rule file from the PrometheusRule, beside a copy of the unit tests."""
    (tmp_path / RULES_FILE_NAME).write_text(
        yaml.safe_dump({"groups": _rule()["spec"]["groups"]}, sort_keys=False), encoding="utf-8"
    )
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    return tmp_path


def test_the_prometheus_rule_is_a_prometheus_operator_object() -> None:
    rule = _rule()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["name"] == "b2ckeys"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}


def test_promtool_accepts_the_rules(rule_dir: Path) -> None:
    checked = _promtool("check", "rules", str(rule_dir / RULES_FILE_NAME))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in checked.stdout


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say(rule_dir: Path) -> None:
    tested = _promtool("test", "rules", str(rule_dir / UNIT_TESTS.name))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_each_alert_has_a_case_firing_and_a_case_not_firing() -> None:
    cases = [
        case
        for group in yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))["tests"]
        for case in group["alert_rule_test"]
    ]
    for alert in _alerts():
        name = alert["alert"]
        expectations = [case["exp_alerts"] for case in cases if case["alertname"] == name]
        assert any(expectations), f"{name} is never expected to fire"
        assert [] in expectations, f"{name} is never expected to stay quiet"


def test_each_alert_says_what_happened_what_to_do_and_how_bad() -> None:
    for alert in _alerts():
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert alert["annotations"]["summary"].strip(), alert["alert"]
        # A description that explains what to do is several sentences, not a restatement.
        assert len(alert["annotations"]["description"].split(". ")) >= 2, alert["alert"]


def test_alerts_use_only_the_operators_metric_names() -> None:
    used = {name for alert in _alerts() for name in re.findall(r"\bb2ckeys_\w+", alert["expr"])}
    assert used
    assert used <= CONTRACT_METRICS, used - CONTRACT_METRICS


def test_a_wrong_expectation_makes_promtool_fail(rule_dir: Path) -> None:
    tests = yaml.safe_load((rule_dir / UNIT_TESTS.name).read_text(encoding="utf-8"))
    expiry = next(group for group in tests["tests"] if group["name"] == "key expiry")
    warning = next(
        case
        for case in expiry["alert_rule_test"]
        if case["alertname"] == "B2CKeyExpiresWithin30Days" and case["exp_alerts"]
    )
    # The key set with a staged successor must not be warned about; claim it is.
    extra = {**warning["exp_alerts"][0]}
    extra["exp_labels"] = {**extra["exp_labels"], "name": "encryption"}
    warning["exp_alerts"].append(extra)
    (rule_dir / UNIT_TESTS.name).write_text(yaml.safe_dump(tests), encoding="utf-8")

    tested = _promtool("test", "rules", str(rule_dir / UNIT_TESTS.name))
    assert tested.returncode != 0
    assert "B2CKeyExpiresWithin30Days" in tested.stdout + tested.stderr


def test_a_broken_expression_makes_promtool_check_fail(tmp_path: Path) -> None:
    groups = _rule()["spec"]["groups"]
    groups[0]["rules"][0]["expr"] = "min by (namespace (b2ckeys_keyset_keys)"
    broken = tmp_path / RULES_FILE_NAME
    broken.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    checked = _promtool("check", "rules", str(broken))
    assert checked.returncode != 0
