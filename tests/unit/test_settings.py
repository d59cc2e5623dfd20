"""Settings are read once from the environment, and refuse what would misbehave."""

from __future__ import annotations

import pytest

from b2ckeys.settings import Settings, SettingsError, parse_duration

BASE = {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s3cr3t-canary"}


def test_defaults_and_the_default_tenant() -> None:
    settings = Settings.from_env(BASE)
    assert settings.graph is not None
    assert settings.graph.client_secret is not None
    assert settings.graph.client_secret.reveal() == "s3cr3t-canary"
    assert "s3cr3t-canary" not in repr(settings)
    assert settings.resync_interval == 600.0
    assert settings.watch_selector == "b2ckeys.dev/watch=true"
    assert Settings.from_env({}).graph is None


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"AZURE_TENANT_ID": "t"}, "AZURE_CLIENT_ID"),
        ({**BASE, "AZURE_FEDERATED_TOKEN_FILE": "/f"}, "exactly one"),
        ({"B2CKEYS_RESYNC_INTERVAL": "0s"}, "at least"),
        ({"B2CKEYS_ERROR_BACKOFF_INITIAL": "soon"}, "not a duration"),
        ({"B2CKEYS_MAX_CONCURRENT_RECONCILES": "0"}, "at least 1"),
        ({"B2CKEYS_WATCH_LABEL": "no-value"}, "key=value"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        Settings.from_env(env)


def test_peppers_current_first_then_previous_then_none() -> None:
    settings = Settings.from_env(
        {"B2CKEYS_FINGERPRINT_PEPPER": "two", "B2CKEYS_FINGERPRINT_PEPPER_PREVIOUS": "one,zero"}
    )
    assert settings.fingerprint_peppers() == [b"two", b"one", b"zero", b""]
    assert Settings.from_env({}).fingerprint_peppers() == [b""]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h30m", 5400), ("4380h", 15768000), ("2.5", 2.5)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
