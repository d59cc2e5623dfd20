"""scripts/go-tools without building anything: version keys, the build module's go.mod, the CRD
check, and what --no-build answers for missing, stale and present tools.

A "present" tool here is a small shell script that answers the version probe the way the real
binary does; the real builds are exercised by tests/tools (which run them).
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "go-tools"


def _load(path: Path, name: str) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules while the class is being made.
    sys.modules[name] = module
    loader.exec_module(module)
    return module


go_tools = _load(SCRIPT, "_go_tools_under_test")
kube_binaries = _load(ROOT / "scripts" / "kube-binaries", "_kube_binaries_under_test")
gobuild = sys.modules["gobuild"]

UPSTREAM_GO_MOD = """module helm.sh/helm/v3

go 1.26.0

godebug default=go1.23

require (
\tgithub.com/Masterminds/semver/v3 v3.4.0
\tk8s.io/client-go v0.35.1
)
"""


def test_upstream_tools_are_keyed_by_their_pinned_release() -> None:
    assert go_tools.TOOLS["helm"].version_key() == go_tools.HELM_VERSION
    assert go_tools.TOOLS["promtool"].version_key() == go_tools.PROMETHEUS_MODULE_VERSION


@pytest.mark.parametrize("name", ["argocd-lua", "cert-manager-controller"])
def test_our_own_mains_are_keyed_by_release_and_source_digest(name: str, tmp_path: Path) -> None:
    tool = go_tools.TOOLS[name]
    key = tool.version_key()
    assert key.startswith(f"{tool.version}-")
    assert len(key.removeprefix(f"{tool.version}-")) == 12

    # The same source elsewhere gives the same key; an edit to it gives another, so a stale
    # cached harness is never taken for the current one.
    (tmp_path / name).mkdir()
    copy = tmp_path / name / "main.go"
    copy.write_bytes((ROOT / "scripts" / name / "main.go").read_bytes())
    moved = dataclasses.replace(tool, source_root=tmp_path)
    assert moved.version_key() == key
    copy.write_text(copy.read_text() + "\n// edited\n")
    assert moved.version_key() != key


def test_a_changed_pin_of_an_extra_module_changes_the_key() -> None:
    tool = go_tools.TOOLS["argocd-lua"]
    repinned = dataclasses.replace(
        tool, extra_requires={**tool.extra_requires, "sigs.k8s.io/yaml": "v1.5.0"}
    )
    assert repinned.version_key() != tool.version_key()


def test_tools_land_in_per_tool_version_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    helm = go_tools.TOOLS["helm"]
    assert go_tools.bin_dir(helm) == tmp_path / "b2ckeys" / "tools" / "helm-v3.22.0" / "bin"


@pytest.mark.parametrize(
    ("module_version", "release"),
    [("v0.316.0", "3.16.0"), ("v0.300.1", "3.0.1"), ("v0.399.12", "3.99.12")],
)
def test_prometheus_module_versions_map_to_releases(module_version: str, release: str) -> None:
    assert go_tools.prometheus_release(module_version) == release


def test_a_prometheus_2_module_version_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not a Prometheus 3\.x"):
        go_tools.prometheus_release("v0.55.1")


def test_the_build_module_requires_the_pinned_release_and_keeps_upstream_go_settings() -> None:
    go_mod = gobuild.build_module_go_mod(
        "b2ckeys.local/build/helm", UPSTREAM_GO_MOD, ("helm.sh/helm/v3", "v3.22.0"), pins={}
    )
    assert go_mod == (
        "module b2ckeys.local/build/helm\n"
        "\n"
        "go 1.26.0\n"
        "\n"
        "godebug default=go1.23\n"
        "\n"
        "require helm.sh/helm/v3 v3.22.0\n"
    )


def test_a_main_of_our_own_requires_each_pinned_module() -> None:
    tool = go_tools.TOOLS["argocd-lua"]
    go_mod = gobuild.build_module_go_mod(
        "b2ckeys.local/build/argocd-lua",
        "module github.com/yuin/gopher-lua\n\ngo 1.23\n",
        (tool.module, tool.version),
        pins={},
        extra_requires=tool.extra_requires,
    )
    assert "go 1.23\n" in go_mod
    assert (
        "require (\n"
        f"\tgithub.com/yuin/gopher-lua {go_tools.GOPHER_LUA_VERSION}\n"
        f"\tlayeh.com/gopher-json {go_tools.GOPHER_JSON_VERSION}\n"
        f"\tsigs.k8s.io/yaml {go_tools.SIGS_YAML_VERSION}\n"
        ")\n"
    ) in go_mod
    assert "replace" not in go_mod


def test_kube_binaries_still_pins_locally_replaced_modules() -> None:
    upstream = (
        "module k8s.io/kubernetes\n\ngo 1.25.0\n\nrequire k8s.io/api v0.0.0\n\n"
        "replace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n"
        "\tk8s.io/sample-controller => ./staging/src/k8s.io/sample-controller\n)\n"
    )
    pins = {
        module: "v0.37.2"
        for module in kube_binaries.locally_replaced_modules(upstream)
        if module in kube_binaries.required_modules(upstream)
    }
    go_mod = kube_binaries.build_module_go_mod(
        "b2ckeys.local/build/kubectl", upstream, ("k8s.io/kubernetes", "v1.37.2"), pins
    )
    assert "require k8s.io/kubernetes v1.37.2\n" in go_mod
    assert "replace (\n\tk8s.io/api => k8s.io/api v0.37.2\n)\n" in go_mod


def test_plain_crds_pass_and_templated_ones_are_refused() -> None:
    plain = "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
    assert go_tools.plain_crd_yaml(plain, "x.yaml") == plain
    templated = "{{- if .Values.crds.enabled }}\n" + plain + "{{- end }}\n"
    with pytest.raises(SystemExit, match="Helm templating"):
        go_tools.plain_crd_yaml(templated, "crd-certificates.yaml")
    with pytest.raises(SystemExit, match="not a CustomResourceDefinition"):
        go_tools.plain_crd_yaml("apiVersion: v1\nkind: ConfigMap\n", "cm.yaml")


# ---- --no-build, as tests call it ----


def _run(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
        check=False,
        timeout=60,
    )


def _plant(cache: Path, tool_name: str, version_output: str) -> Path:
    """A stand-in binary that answers the version probe with `version_output`."""
    tool = go_tools.TOOLS[tool_name]
    bin_dir = cache / "b2ckeys" / "tools" / f"{tool.name}-{tool.version_key()}" / "bin"
    bin_dir.mkdir(parents=True)
    binary = bin_dir / tool.name
    binary.write_text(f"#!/bin/sh\necho '{version_output}'\n")
    binary.chmod(0o755)
    return bin_dir


def test_no_build_names_what_is_missing_and_builds_nothing(tmp_path: Path) -> None:
    result = _run(tmp_path, "--print-dir", "--no-build", "helm")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "helm v3.22.0 is not built (missing: bin/helm" in result.stderr
    assert "run `scripts/go-tools helm` or `make test`" in result.stderr
    assert not (tmp_path / "b2ckeys" / "tools" / "helm-v3.22.0" / "bin").exists()


def test_no_build_prints_the_bin_directory_of_a_tool_reporting_its_pinned_version(
    tmp_path: Path,
) -> None:
    bin_dir = _plant(tmp_path, "helm", 'version.BuildInfo{Version:"v3.22.0", GitTreeState:"clean"}')
    result = _run(tmp_path, "--print-dir", "--no-build", "helm")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{bin_dir}\n"


def test_no_build_refuses_a_binary_of_another_version(tmp_path: Path) -> None:
    _plant(tmp_path, "helm", 'version.BuildInfo{Version:"v3.21.4", GitTreeState:"clean"}')
    result = _run(tmp_path, "--print-dir", "--no-build", "helm")
    assert result.returncode == 1
    assert "missing: bin/helm" in result.stderr


def test_cert_manager_controller_needs_its_crds_beside_it(tmp_path: Path) -> None:
    tool = go_tools.TOOLS["cert-manager-controller"]
    bin_dir = _plant(
        tmp_path, tool.name, f"cert-manager-controller {tool.version_key()} (cert-manager v1)"
    )
    missing_crds = _run(tmp_path, "--print-dir", "--no-build", tool.name)
    assert missing_crds.returncode == 1
    assert "missing: crds/" in missing_crds.stderr

    crds = bin_dir.parent / "crds"
    crds.mkdir()
    (crds / "cert-manager.io_certificates.yaml").write_text("kind: CustomResourceDefinition\n")
    present = _run(tmp_path, "--print-dir", "--no-build", tool.name)
    assert present.returncode == 0, present.stderr
    assert present.stdout == f"{bin_dir}\n"


def test_several_tools_print_one_directory_each_and_unknown_names_are_refused(
    tmp_path: Path,
) -> None:
    helm_dir = _plant(tmp_path, "helm", 'Version:"v3.22.0"')
    promtool_dir = _plant(tmp_path, "promtool", "promtool, version 3.16.0 (branch: x)")
    both = _run(tmp_path, "--print-dir", "--no-build", "helm", "promtool")
    assert both.returncode == 0, both.stderr
    assert both.stdout.splitlines() == [str(helm_dir), str(promtool_dir)]

    unknown = _run(tmp_path, "--print-dir", "--no-build", "kubectl")
    assert unknown.returncode == 2
    assert "unknown tool(s) kubectl" in unknown.stderr
