"""`b2ckeys kube-emulator` as a process: first line, kubeconfig, a real client, clean stops."""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import kubernetes
import pytest
import yaml
from kubernetes import client as k8s

from b2ckeys_emulators.kube.cli import main

# Process start (imports, bundled resource list) takes about 0.5 s; this is the ceiling.
START_SECONDS = 15.0
STOP_SECONDS = 5.0
FIRST_LINE = re.compile(r"b2ckeys kube-emulator listening on (http://127\.0\.0\.1:\d+)\n")


def read_line(process: subprocess.Popen[str], within: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(within):
            raise AssertionError("no line from the emulator in time")
    return process.stdout.readline()


@contextmanager
def emulator_process(*args: str) -> Iterator[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "b2ckeys.cli", "kube-emulator", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=STOP_SECONDS)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_the_cli_serves_a_cluster_until_signalled(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    kubeconfig = tmp_path / "sub" / "kubeconfig"
    with emulator_process("--kubeconfig", str(kubeconfig)) as process:
        line = read_line(process, START_SECONDS)
        match = FIRST_LINE.fullmatch(line)
        assert match, line
        # The kubeconfig is complete once the line is out.
        config = yaml.safe_load(kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == match[1]
        api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        try:
            core = k8s.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": "cli"}})
            core.create_namespaced_secret(
                "cli", {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
            )
            assert core.read_namespaced_secret("s", "cli").data == {"k": "dg=="}
            crds = k8s.ApiextensionsV1Api(api).list_custom_resource_definition()
            assert "trustframeworkkeysets.b2ckeys.dev" in {c.metadata.name for c in crds.items}
        finally:
            api.close()
        stopping = time.monotonic()
        process.send_signal(stop_signal)
        assert process.wait(STOP_SECONDS) == 0
        assert time.monotonic() - stopping < STOP_SECONDS
        _, stderr = process.communicate()
        assert "Traceback" not in stderr


def test_the_cli_serves_only_the_crds_it_is_given(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    empty = tmp_path / "no-crds"
    empty.mkdir()
    with emulator_process("--kubeconfig", str(kubeconfig), "--crd", str(empty)) as process:
        assert FIRST_LINE.fullmatch(read_line(process, START_SECONDS))
        api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        try:
            assert k8s.ApiextensionsV1Api(api).list_custom_resource_definition().items == []
        finally:
            api.close()
        process.terminate()
        assert process.wait(STOP_SECONDS) == 0


def test_a_rejected_crd_is_an_error_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: wrong}\nspec: {group: example.dev}\n"
    )
    assert main(["--kubeconfig", str(tmp_path / "kubeconfig"), "--crd", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "CRD not accepted" in err


def test_the_kubeconfig_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "--kubeconfig" in capsys.readouterr().err
