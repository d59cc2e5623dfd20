"""The Argo CD customisation in deploy/argocd, run by Argo CD's Lua VM.

`argocd-lua` (scripts/argocd-lua, built by scripts/go-tools) runs health.lua, discovery.lua and
action.lua on github.com/yuin/gopher-lua at Argo CD's version, with only the libraries Argo CD
opens for argocd-cm customisations, and checks every health_test.yaml / action_test.yaml the
way Argo CD's own tests do. These tests run it over deploy/argocd, prove that it can fail (wrong
expectations, a library Argo CD does not open, a script that never ends), and check the test
data against the CRD so it has the shape the operator writes.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schema import apply_defaults, load_crd, schema_errors, served_schema

from go_tools import argocd_health, tool_binary

ROOT = Path(__file__).resolve().parents[2]
CUSTOMISATION = ROOT / "deploy" / "argocd"
KEY_SET = CUSTOMISATION / "b2ckeys.dev" / "TrustFrameworkKeySet"
KINDS = ("TrustFrameworkKeySet", "B2CTenant", "ClusterB2CTenant")

# Generous for a script Argo CD stops after 1 second; only bounds a hung harness.
HARNESS_TIMEOUT_SECONDS = 60


def _harness(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool_binary("argocd-lua")), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=HARNESS_TIMEOUT_SECONDS,
    )


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _expected_case_lines() -> set[str]:
    """`<kind> <case>` for every case in the test files, as the harness names them."""
    lines: set[str] = set()
    for test_file in CUSTOMISATION.rglob("health_test.yaml"):
        where = test_file.parent.relative_to(CUSTOMISATION)
        for test in _load(test_file)["tests"]:
            lines.add(f"health {where / test['inputPath']}")
    for test_file in CUSTOMISATION.rglob("action_test.yaml"):
        where = test_file.parent.relative_to(CUSTOMISATION)
        tests = _load(test_file)
        for test in tests.get("discoveryTests", []):
            lines.add(f"discovery {where / 'discovery' / test['inputPath']}")
        for test in tests.get("actionTests", []):
            lines.add(f"action {where / test['action'] / test['inputPath']}")
    return lines


def _results(output: str) -> dict[str, str]:
    """`<kind> <case>` -> PASS/FAIL from the harness' one line per case."""
    results: dict[str, str] = {}
    for line in output.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in ("PASS", "FAIL"):
            kind, case = rest.split(" ", 2)[:2]
            results[f"{kind} {case.rstrip(':')}"] = verdict
    return results


def test_the_layout_is_argo_cds_resource_customizations() -> None:
    for kind in KINDS:
        directory = CUSTOMISATION / "b2ckeys.dev" / kind
        assert (directory / "health.lua").is_file()
        assert (directory / "health_test.yaml").is_file()
        for test in _load(directory / "health_test.yaml")["tests"]:
            assert (directory / test["inputPath"]).is_file()
    actions = KEY_SET / "actions"
    assert (actions / "discovery.lua").is_file()
    for action in ("sync-now", "observe", "resume"):
        assert (actions / action / "action.lua").is_file()


@pytest.mark.parametrize("libraries", [[], ["--open-libs"]], ids=["argocd-cm", "built-in"])
def test_every_case_passes_on_argo_cds_lua_vm(libraries: list[str]) -> None:
    # As an argocd-cm customisation (base, table, package and a safe os only) and as a built-in
    # script would run if contributed upstream (Lua's standard libraries open too).
    result = _harness("test", *libraries, str(CUSTOMISATION))
    assert result.returncode == 0, result.stdout + result.stderr
    results = _results(result.stdout)
    assert set(results) == _expected_case_lines()
    assert set(results.values()) == {"PASS"}


def _copy_customisation(tmp_path: Path) -> Path:
    copy = tmp_path / "customisation"
    shutil.copytree(CUSTOMISATION, copy)
    return copy


def test_a_wrong_health_expectation_fails_that_case_only(tmp_path: Path) -> None:
    copy = _copy_customisation(tmp_path)
    test_file = copy / "b2ckeys.dev" / "TrustFrameworkKeySet" / "health_test.yaml"
    tests = _load(test_file)
    healthy = next(t for t in tests["tests"] if t["inputPath"] == "testdata/healthy.yaml")
    healthy["healthStatus"]["status"] = "Degraded"
    test_file.write_text(yaml.safe_dump(tests), encoding="utf-8")

    result = _harness("test", str(copy))
    assert result.returncode == 1
    failed = {case for case, verdict in _results(result.stdout).items() if verdict == "FAIL"}
    assert failed == {"health b2ckeys.dev/TrustFrameworkKeySet/testdata/healthy.yaml"}
    assert 'got {"status":"Healthy"' in result.stdout


def test_a_wrong_action_result_fails(tmp_path: Path) -> None:
    copy = _copy_customisation(tmp_path)
    expected = copy / "b2ckeys.dev" / "TrustFrameworkKeySet" / "actions" / "testdata"
    observed = _load(expected / "observe-mode.yaml")
    observed["spec"]["mode"] = "Sync"
    (expected / "observe-mode.yaml").write_text(yaml.safe_dump(observed), encoding="utf-8")

    result = _harness("test", str(copy))
    assert result.returncode == 1
    case = "action b2ckeys.dev/TrustFrameworkKeySet/actions/observe/testdata/sync-mode.yaml"
    assert _results(result.stdout)[case] == "FAIL"


def test_a_wrong_discovery_expectation_fails(tmp_path: Path) -> None:
    copy = _copy_customisation(tmp_path)
    test_file = copy / "b2ckeys.dev" / "TrustFrameworkKeySet" / "actions" / "action_test.yaml"
    tests = _load(test_file)
    observe_mode = next(
        t for t in tests["discoveryTests"] if t["inputPath"] == "testdata/observe-mode.yaml"
    )
    resume = next(a for a in observe_mode["result"] if a["name"] == "resume")
    resume["disabled"] = True
    test_file.write_text(yaml.safe_dump(tests), encoding="utf-8")

    result = _harness("test", str(copy))
    assert result.returncode == 1
    case = "discovery b2ckeys.dev/TrustFrameworkKeySet/actions/discovery/testdata/observe-mode.yaml"
    assert _results(result.stdout)[case] == "FAIL"


def test_a_misspelt_key_in_a_test_file_is_an_error_not_a_silent_pass(tmp_path: Path) -> None:
    copy = _copy_customisation(tmp_path)
    test_file = copy / "b2ckeys.dev" / "B2CTenant" / "health_test.yaml"
    tests = _load(test_file)
    tests["tests"][0]["expectedHealth"] = tests["tests"][0].pop("healthStatus")
    test_file.write_text(yaml.safe_dump(tests), encoding="utf-8")

    result = _harness("test", str(copy))
    assert result.returncode == 1
    assert "FAIL health b2ckeys.dev/B2CTenant: unreadable or empty" in result.stdout


def _single_script_tree(tmp_path: Path, health_lua: str) -> Path:
    """A customisation tree with one health.lua run against the healthy key set."""
    tree = tmp_path / "tree"
    directory = tree / "b2ckeys.dev" / "TrustFrameworkKeySet"
    (directory / "testdata").mkdir(parents=True)
    shutil.copy(KEY_SET / "testdata" / "healthy.yaml", directory / "testdata" / "healthy.yaml")
    (directory / "health.lua").write_text(health_lua, encoding="utf-8")
    (directory / "health_test.yaml").write_text(
        yaml.safe_dump(
            {
                "tests": [
                    {
                        "inputPath": "testdata/healthy.yaml",
                        "healthStatus": {"status": "Healthy", "message": "token-signing"},
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    return tree


def test_lua_string_library_is_not_open_to_argocd_cm_customisations(tmp_path: Path) -> None:
    # Why the scripts never call string.*: Argo CD does not open it for argocd-cm scripts.
    tree = _single_script_tree(
        tmp_path,
        'return {status = "Healthy", message = string.lower(obj.metadata.name)}\n',
    )
    restricted = _harness("test", str(tree))
    assert restricted.returncode == 1
    assert "attempt to index a non-table object(nil) with key 'lower'" in restricted.stdout
    assert _harness("test", "--open-libs", str(tree)).returncode == 0


def test_a_script_that_never_returns_is_stopped_like_argo_cd_does(tmp_path: Path) -> None:
    tree = _single_script_tree(tmp_path, "while true do end\n")
    started = time.monotonic()
    result = _harness("test", str(tree))
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "context deadline exceeded" in result.stdout
    # Argo CD's deadline is 1 second; allow for a loaded machine.
    assert elapsed < 15


def test_an_empty_tree_is_a_failure_not_a_pass(tmp_path: Path) -> None:
    result = _harness("test", str(tmp_path))
    assert result.returncode == 1
    assert "no health_test.yaml or action_test.yaml cases" in result.stderr


def test_single_object_mode_prints_the_health_of_a_json_object_on_stdin() -> None:
    # How the operator suite feeds the statuses the operator really wrote (argocd_health).
    key_set = _load(KEY_SET / "testdata" / "pending-activation.yaml")
    result = _harness("health", str(KEY_SET / "health.lua"), stdin=json.dumps(key_set))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "status": "Progressing",
        "message": key_set["status"]["conditions"][0]["message"],
    }
    assert argocd_health(key_set) == json.loads(result.stdout)
    tenant = _load(CUSTOMISATION / "b2ckeys.dev" / "ClusterB2CTenant" / "testdata" / "healthy.yaml")
    assert argocd_health(tenant)["status"] == "Healthy"


def test_sync_now_stamps_the_current_utc_time() -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    result = _harness(
        "action",
        str(KEY_SET / "actions" / "sync-now" / "action.lua"),
        stdin=(KEY_SET / "actions" / "testdata" / "sync-mode.yaml").read_text(encoding="utf-8"),
    )
    after = datetime.datetime.now(datetime.UTC)
    assert result.returncode == 0, result.stderr
    (patched,) = json.loads(result.stdout)
    assert patched["operation"] == "patch"
    stamp = patched["resource"]["metadata"]["annotations"]["b2ckeys.dev/force-sync"]
    assert stamp.endswith("Z")
    assert before <= datetime.datetime.fromisoformat(stamp) <= after


def test_key_set_test_data_fits_the_crd() -> None:
    # The statuses are typed here; the operator suite later feeds captured ones through the
    # single-object mode. Both must be what the API server accepts for the CRD.
    schema = served_schema(load_crd())
    data = sorted(KEY_SET.glob("**/testdata/*.yaml"))
    assert len(data) >= 10
    for path in data:
        assert schema_errors(schema, apply_defaults(schema, _load(path))) == [], path


def test_the_argocd_cm_keys_hold_exactly_the_scripts() -> None:
    config_map = _load(CUSTOMISATION / "argocd-cm.yaml")
    assert (config_map["kind"], config_map["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    data = config_map["data"]
    for kind in KINDS:
        health = CUSTOMISATION / "b2ckeys.dev" / kind / "health.lua"
        assert data[f"resource.customizations.health.b2ckeys.dev_{kind}"] == health.read_text(
            encoding="utf-8"
        )
    actions = yaml.safe_load(
        data["resource.customizations.actions.b2ckeys.dev_TrustFrameworkKeySet"]
    )
    directory = KEY_SET / "actions"
    assert actions["discovery.lua"] == (directory / "discovery.lua").read_text(encoding="utf-8")
    defined = {d["name"]: d["action.lua"] for d in actions["definitions"]}
    on_disk = {p.parent.name: p.read_text(encoding="utf-8") for p in directory.glob("*/action.lua")}
    assert defined == on_disk
    assert len(data) == len(KINDS) + 1
