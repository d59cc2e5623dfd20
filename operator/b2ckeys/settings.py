"""The operator's configuration: the only module that reads the environment.

Read once at startup (`Settings.from_env`) and passed down through Kopf's memo; nothing else
looks at `os.environ`, so tests configure the operator by building a Settings value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from b2ckeys.graph.client import GraphConnection
from b2ckeys.secret import SecretBytes, SecretStr

API_GROUP = "b2ckeys.dev"
API_VERSION = "v1alpha1"
KEYSET_PLURAL = "trustframeworkkeysets"
# Added only to key sets with deletionPolicy: Delete, which the operator finalizes.
FINALIZER = "b2ckeys.dev/delete-key-set"
# Set by a person or a tool (Argo CD's sync-now action) to reconcile a key set at once.
FORCE_SYNC_ANNOTATION = "b2ckeys.dev/force-sync"
PUBLIC_CLOUD_AUTHORITY = "https://login.microsoftonline.com"
PUBLIC_GRAPH_BETA = "https://graph.microsoft.com/beta"
LEASE_NAME = "b2ckeys-leader"
METRICS_ADDRESS = "0.0.0.0:8081"
# Where a pod finds its own namespace when the Deployment does not pass POD_NAMESPACE.
SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


# Intervals that pace a loop may be short (tests use tenths of a second) but never zero, which
# would turn a resync or a backoff into a busy loop against B2C.
_LOOP_FLOOR = 0.01


class SettingsError(ValueError):
    """A setting is malformed; the message names the variable and what is expected."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse a Go-style duration (`90s`, `10m`, `4380h`, `1h30m`, plain seconds) into seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 10m, 1h30m or 4380h")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


@dataclass(frozen=True)
class Settings:
    # Where Graph is and who we are there; None when no default tenant is configured, in which
    # case key sets without a tenantRef report Unauthorized with what to set.
    graph: GraphConnection | None = None
    # Secrets and ConfigMaps are watched only with this label (server-side selector), so
    # unrelated Secrets never reach the operator's memory.
    watch_label_key: str = "b2ckeys.dev/watch"
    watch_label_value: str = "true"
    # Catches portal edits, deleted containers and unlabelled Secrets; B2C is rate-limited per
    # tenant, so minutes, not seconds.
    resync_interval: float = 600.0
    # How often a key waiting for its notBefore is re-checked against B2C's getActiveKey.
    activation_poll_interval: float = 60.0
    # Which key B2C uses is worked out from the key set's own read (one Graph call per resync),
    # except within this long of a key's notBefore or expiry: B2C switches by its own clock and
    # caches keys for a few minutes ("Key caching" in the policy keys overview), so near those
    # moments getActiveKey is asked.
    active_key_margin: float = 300.0
    # Bounded backoff for failed reconciles: no crash loop, and bad input is retried at least
    # this often even without a triggering event.
    error_backoff_initial: float = 1.0
    error_backoff_max: float = 300.0
    # After a write whose response was lost, wait this long before re-reading the key set, so
    # a commit B2C has not yet made visible is not mistaken for a failed write.
    outcome_unknown_delay: float = 5.0
    # A write whose fate is unknown (its answer was lost, or the operator died while it was in
    # flight) is not repeated for this long after it was recorded: Graph may still commit it.
    # Graph's own time to answer a write (the client's 30 s timeout) plus the re-read delay.
    write_settle_time: float = 35.0
    # Key sets reconciled in parallel (one writer per key set regardless).
    max_concurrent_reconciles: int = 8
    # `deletionPolicy: Delete` gives up after this long and lets the namespace go.
    delete_timeout: float = 300.0
    # An optional operator-wide secret mixed into string-secret fingerprints (HMAC pepper), and
    # the ones used before it: fingerprints made with those are still recognised.
    fingerprint_pepper: SecretBytes | None = None
    previous_fingerprint_peppers: tuple[SecretBytes, ...] = ()
    json_logs: bool = False
    # The kubeconfig for the storage layer; None means the in-cluster service account.
    kubeconfig: str | None = None
    # Leader election (leader.py): one replica writes, the others stand by with watches open.
    # client-go's semantics and defaults: a holder that has not renewed for `lease_duration`
    # may be replaced; the holder itself stops writing once it has failed to renew for
    # `renew_deadline` (shorter, so it stops before anyone can take over); every replica
    # tries to acquire or renew every `retry_period`.
    leader_election: bool = True
    lease_name: str = LEASE_NAME
    # The operator's own namespace (POD_NAMESPACE): where its Lease lives, and where a
    # ClusterB2CTenant's credential Secrets are read from (and nowhere else).
    operator_namespace: str = "default"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    # The candidate's identity in the Lease; None: the hostname plus a random suffix.
    pod_name: str | None = None
    # /metrics and /readyz (host:port); None serves neither (tests that run several operators
    # in one process).
    metrics_address: str | None = METRICS_ADDRESS
    # The operator's projected service account token (workload identity), which every tenant
    # with `auth.workloadIdentity` exchanges for its own app registration's Graph token.
    workload_identity_token_file: str | None = None

    def __post_init__(self) -> None:
        if self.leader_election:
            _check_election_timings(self.lease_duration, self.renew_deadline, self.retry_period)

    def fingerprint_peppers(self) -> list[bytes]:
        """The current pepper first, then the previous ones, then none at all (as before any
        pepper was set)."""
        current = self.fingerprint_pepper.reveal() if self.fingerprint_pepper else b""
        ordered = [current, *(p.reveal() for p in self.previous_fingerprint_peppers), b""]
        return list(dict.fromkeys(ordered))

    @property
    def watch_selector(self) -> str:
        return f"{self.watch_label_key}={self.watch_label_value}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            graph=_graph_connection(env),
            watch_label_key=env.get("B2CKEYS_WATCH_LABEL", "b2ckeys.dev/watch=true").split("=")[0],
            watch_label_value=_label_value(
                env.get("B2CKEYS_WATCH_LABEL", "b2ckeys.dev/watch=true")
            ),
            resync_interval=_duration(env, "B2CKEYS_RESYNC_INTERVAL", 600.0, minimum=_LOOP_FLOOR),
            activation_poll_interval=_duration(
                env, "B2CKEYS_ACTIVATION_POLL_INTERVAL", 60.0, minimum=_LOOP_FLOOR
            ),
            active_key_margin=_duration(env, "B2CKEYS_ACTIVE_KEY_MARGIN", 300.0),
            error_backoff_initial=_duration(
                env, "B2CKEYS_ERROR_BACKOFF_INITIAL", 1.0, minimum=_LOOP_FLOOR
            ),
            error_backoff_max=_duration(
                env, "B2CKEYS_ERROR_BACKOFF_MAX", 300.0, minimum=_LOOP_FLOOR
            ),
            max_concurrent_reconciles=_int(env, "B2CKEYS_MAX_CONCURRENT_RECONCILES", 8),
            outcome_unknown_delay=_duration(env, "B2CKEYS_OUTCOME_UNKNOWN_DELAY", 5.0),
            write_settle_time=_duration(env, "B2CKEYS_WRITE_SETTLE_TIME", 35.0),
            delete_timeout=_duration(env, "B2CKEYS_DELETE_TIMEOUT", 300.0),
            fingerprint_pepper=(
                SecretBytes(env["B2CKEYS_FINGERPRINT_PEPPER"].encode())
                if env.get("B2CKEYS_FINGERPRINT_PEPPER")
                else None
            ),
            previous_fingerprint_peppers=tuple(
                SecretBytes(p.encode())
                for p in env.get("B2CKEYS_FINGERPRINT_PEPPER_PREVIOUS", "").split(",")
                if p
            ),
            json_logs=env.get("B2CKEYS_LOG_FORMAT", "text").lower() == "json",
            kubeconfig=_kubeconfig(env),
            leader_election=_bool(env, "B2CKEYS_LEADER_ELECTION", True),
            lease_name=env.get("B2CKEYS_LEADER_ELECTION_LEASE_NAME") or LEASE_NAME,
            operator_namespace=_own_namespace(env),
            lease_duration=_duration(env, "B2CKEYS_LEASE_DURATION", 15.0, minimum=1.0),
            renew_deadline=_duration(env, "B2CKEYS_RENEW_DEADLINE", 10.0, minimum=_LOOP_FLOOR),
            retry_period=_duration(env, "B2CKEYS_RETRY_PERIOD", 2.0, minimum=_LOOP_FLOOR),
            pod_name=env.get("POD_NAME") or None,
            metrics_address=_address(env, "B2CKEYS_METRICS_ADDRESS", METRICS_ADDRESS),
            workload_identity_token_file=env.get("AZURE_FEDERATED_TOKEN_FILE") or None,
        )


def _check_election_timings(lease: float, renew: float, retry: float) -> None:
    """client-go's rule: a leader gives up (renew deadline) before its lease can be taken, and
    retries often enough to renew before its deadline even with jitter."""
    if not lease > renew:
        raise SettingsError(
            f"B2CKEYS_LEASE_DURATION ({lease:g}s) must be longer than B2CKEYS_RENEW_DEADLINE "
            f"({renew:g}s), so a leader stops writing before another can take its lease"
        )
    if not renew > 1.2 * retry:
        raise SettingsError(
            f"B2CKEYS_RENEW_DEADLINE ({renew:g}s) must be longer than 1.2 x "
            f"B2CKEYS_RETRY_PERIOD ({retry:g}s)"
        )


def _own_namespace(env: Mapping[str, str]) -> str:
    """Where the Lease lives: POD_NAMESPACE (the downward API), else the pod's service account
    namespace, else `default` (outside a cluster; `b2ckeys run --leader-election-namespace`)."""
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE_FILE, encoding="utf-8") as file:
            return file.read().strip() or "default"
    except OSError:
        return "default"


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in {"true", "1", "yes"}:
        return True
    if raw in {"false", "0", "no"}:
        return False
    raise SettingsError(f"{name}={raw!r}: expected true or false")


def _address(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name) or default
    _, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise SettingsError(f"{name}={raw!r}: expected host:port, e.g. {default}")
    return raw


def _kubeconfig(env: Mapping[str, str]) -> str | None:
    if env.get("KUBERNETES_SERVICE_HOST") and not env.get("KUBECONFIG"):
        return None
    return env.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _label_value(selector: str) -> str:
    if "=" not in selector or not selector.split("=", 1)[1]:
        raise SettingsError(
            f"B2CKEYS_WATCH_LABEL={selector!r}: expected key=value, e.g. b2ckeys.dev/watch=true"
        )
    return selector.split("=", 1)[1]


def _duration(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse_duration(raw)
    except ValueError as e:
        raise SettingsError(f"{name}: {e}") from None
    if value < minimum:
        raise SettingsError(f"{name}: must be at least {minimum:g}s, not {raw}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(f"{name}={raw!r}: expected a whole number of at least 1")
    return int(raw)


def _graph_connection(env: Mapping[str, str]) -> GraphConnection | None:
    tenant = env.get("AZURE_TENANT_ID", "")
    client = env.get("AZURE_CLIENT_ID", "")
    if not tenant and not client:
        return None
    if not tenant or not client:
        missing = "AZURE_TENANT_ID" if not tenant else "AZURE_CLIENT_ID"
        raise SettingsError(f"{missing} is not set; the default tenant needs both ids")
    secret = env.get("AZURE_CLIENT_SECRET") or None
    cert_password = env.get("AZURE_CLIENT_CERTIFICATE_PASSWORD") or None
    try:
        return GraphConnection(
            tenant_id=tenant,
            client_id=client,
            client_secret=SecretStr(secret) if secret else None,
            client_certificate_path=env.get("AZURE_CLIENT_CERTIFICATE_PATH") or None,
            client_certificate_password=SecretStr(cert_password) if cert_password else None,
            federated_token_file=env.get("AZURE_FEDERATED_TOKEN_FILE") or None,
            authority_host=(env.get("AZURE_AUTHORITY_HOST") or PUBLIC_CLOUD_AUTHORITY).rstrip("/"),
            base_url=(env.get("B2CKEYS_GRAPH_BASE_URL") or PUBLIC_GRAPH_BETA).rstrip("/"),
        )
    except ValueError:
        raise SettingsError(
            "set exactly one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or "
            "AZURE_FEDERATED_TOKEN_FILE for the default tenant"
        ) from None
