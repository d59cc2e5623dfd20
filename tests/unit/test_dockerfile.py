"""The Dockerfile's invariants, checked statically (no Docker daemon on the test machines).

A small parser reads the Dockerfile as BuildKit does for these purposes: `\\` continuations
joined, comment lines dropped, build-time ARG defaults substituted into FROM. The checks are
the properties the image must keep: two stages on one pinned base, hash-checked installs, a
numeric non-root user, exec-form ENTRYPOINT/CMD, a build context that never carries .venv.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXPECTED_CMD = ["run", "--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz"]
RUNTIME_UID = 65532


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_instructions(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments and blank lines end nothing, even inside a continuation
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, arguments = " ".join(p for p in pending if p).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


def parse_stages(instructions: list[Instruction]) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults (before the first FROM), and the stages with their images resolved."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "ARG" and not stages:
            arg, _, default = instruction.arguments.partition("=")
            global_args[arg.strip()] = default.strip()
        elif instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            image = re.sub(
                r"\$\{(\w+)\}|\$(\w+)",
                lambda m: global_args[m.group(1) or m.group(2)],
                words[0],
            )
            stage_name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, stage_name))
        else:
            assert stages, f"{instruction} before any FROM"
            stages[-1].instructions.append(instruction)
    return global_args, stages


INSTRUCTIONS = parse_instructions(DOCKERFILE.read_text(encoding="utf-8"))
GLOBAL_ARGS, STAGES = parse_stages(INSTRUCTIONS)
FINAL = STAGES[-1]
BUILDER_STAGES = STAGES[:-1]


def exec_form(instruction: Instruction) -> list[str]:
    """The JSON array of an exec-form ENTRYPOINT/CMD (shell form fails the test)."""
    try:
        value = json.loads(instruction.arguments)
    except json.JSONDecodeError:
        pytest.fail(f"line {instruction.line}: {instruction.keyword} is not in exec form")
    assert isinstance(value, list)
    assert all(isinstance(v, str) for v in value)
    return value


def run_commands(stage: Stage) -> list[list[str]]:
    """Each simple command of each RUN (split at &&), as words; RUN --mount options dropped."""
    commands: list[list[str]] = []
    for run in stage.all("RUN"):
        words = [w for w in shlex.split(run.arguments) if not w.startswith("--mount=")]
        current: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", ";"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(word)
    return commands


def pip_installs(stage: Stage) -> list[list[str]]:
    return [
        c
        for c in run_commands(stage)
        if (c[0].endswith("/pip") and "install" in c) or c[1:4] == ["-m", "pip", "install"]
    ]


def env_values(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for env in stage.all("ENV"):
        for word in shlex.split(env.arguments):
            name, sep, value = word.partition("=")
            assert sep, f"line {env.line}: use ENV NAME=value (the legacy form is ambiguous)"
            values[name] = value
    return values


def labels(stage: Stage) -> dict[str, str]:
    found: dict[str, str] = {}
    for label in stage.all("LABEL"):
        for word in shlex.split(label.arguments):
            name, _, value = word.partition("=")
            found[name] = value
    return found


# --- stages and base images ---------------------------------------------------------------------


def test_parser_reads_this_dockerfile_as_two_stages() -> None:
    # Guards the checks below against a parser that silently sees nothing.
    assert len(INSTRUCTIONS) > 15
    assert [s.name for s in STAGES] == ["builder", None]
    assert FINAL.all("ENTRYPOINT")
    assert FINAL.all("USER")


def test_multi_stage_with_the_final_stage_copying_only_from_the_builder() -> None:
    assert len(STAGES) >= 2
    copies = FINAL.all("COPY")
    assert copies, "the final stage must copy the built environment in"
    for copy in copies:
        assert copy.arguments.startswith("--from=builder "), (
            f"line {copy.line}: the final stage copies only from the builder, never the "
            "build context (sources, tests or lock files have no place in the image)"
        )


def test_every_base_image_is_pinned_and_none_is_latest() -> None:
    for stage in STAGES:
        image = stage.image
        name, _, digest = image.partition("@")
        tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
        assert tag or digest, f"{image}: no tag or digest, which means latest"
        assert tag != "latest", f"{image}: latest moves under the build"
        assert "latest" not in image.split(":")[-1], image


def test_both_stages_use_the_same_python_image() -> None:
    # The venv's bin/python is a link to the base image's interpreter: a different base in the
    # final stage would leave it dangling or pointing at another Python.
    assert len({s.image for s in STAGES}) == 1
    assert STAGES[0].image.startswith("python:3.11-slim")
    requires = PYPROJECT["project"]["requires-python"]
    assert requires == ">=3.11", "revisit the base image when requires-python changes"


def test_no_add_instructions_and_no_piped_downloads() -> None:
    assert not [i for i in INSTRUCTIONS if i.keyword == "ADD"], "COPY only: ADD fetches URLs"
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "RUN":
            assert not re.search(r"\b(curl|wget)\b", instruction.arguments), instruction


# --- what gets installed ------------------------------------------------------------------------


def test_the_lock_is_installed_with_hashes_required_before_the_package() -> None:
    builder = BUILDER_STAGES[0]
    installs = pip_installs(builder)
    lock_installs = [c for c in installs if "requirements.lock" in c]
    assert len(lock_installs) == 1, installs
    lock_install = lock_installs[0]
    assert "--require-hashes" in lock_install
    assert "--only-binary=:all:" in lock_install
    package_installs = [c for c in installs if c[-1] == "."]
    assert len(package_installs) == 1, installs
    package_install = package_installs[0]
    assert "--no-deps" in package_install, "dependencies come from the hash-checked lock only"
    assert "--no-build-isolation" in package_install, (
        "an isolated build fetches setuptools unpinned"
    )
    assert installs.index(lock_install) < installs.index(package_install)
    # Nothing else is installed: every other pip install would bypass the lock.
    assert sorted(map(tuple, installs)) == sorted([tuple(lock_install), tuple(package_install)])


def test_the_build_prunes_to_the_runtime_closure_and_checks_what_is_left() -> None:
    commands = run_commands(BUILDER_STAGES[0])
    flat = [" ".join(c) for c in commands]
    prune = [i for i, c in enumerate(flat) if "scripts/prune_to_runtime.py" in c]
    check = [i for i, c in enumerate(flat) if c.endswith("pip check")]
    assert prune, flat
    assert check, flat
    assert prune[0] < check[0], "check what is left after pruning, not before"
    assert flat[prune[0]].endswith(f" {PYPROJECT['project']['name']}")
    assert any(c.endswith("pip uninstall --yes --quiet pip") for c in flat), flat


def test_every_script_the_dockerfile_runs_exists() -> None:
    named = set(re.findall(r"scripts/[\w.-]+\.py", DOCKERFILE.read_text(encoding="utf-8")))
    assert named
    for script in named:
        assert (ROOT / script).is_file(), script


def test_the_image_builds_the_operator_package_and_not_the_emulators() -> None:
    # The emulators stand in for the cloud in tests and the demo; a fake token issuer or API
    # server has no place in a production image. They are never copied, so setuptools cannot
    # find them, and nothing the operator's package needs lies behind a symlink.
    copied = {
        part.rstrip("/")
        for copy in BUILDER_STAGES[0].all("COPY")
        if not copy.arguments.startswith("--from")
        for part in shlex.split(copy.arguments)[:-1]
    }
    assert "operator/b2ckeys" in copied, copied
    assert not any(part.startswith("operator/b2ckeys_emulators") for part in copied), copied
    assert "operator" not in copied, "copying operator/ whole would bring the emulators in"
    package = ROOT / "operator" / "b2ckeys"
    for name in PYPROJECT["tool"]["setuptools"]["package-data"]["b2ckeys"]:
        for path in package.glob(name):
            assert not path.is_symlink(), f"{path} would need its target in the build context"


# --- how it runs --------------------------------------------------------------------------------


def test_the_final_user_is_numeric_and_not_root() -> None:
    users = FINAL.all("USER")
    assert users, "the final stage must switch away from root"
    user, _, group = users[-1].arguments.partition(":")
    assert user.isdigit(), "a numeric uid lets Kubernetes verify runAsNonRoot"
    assert int(user) == RUNTIME_UID
    assert group.isdigit()
    assert int(group) != 0
    last_user = max(i.line for i in users)
    assert all(r.line < last_user for r in FINAL.all("RUN")), "RUN after USER would run as it"


def test_the_runtime_user_has_a_passwd_entry() -> None:
    # Kopf calls getpass.getuser() for its identity unless POD_ID is set; without a passwd
    # entry for the uid, that raises and the operator dies at start.
    commands = [" ".join(c) for c in run_commands(FINAL)]
    assert any(c.startswith("useradd ") and f"--uid {RUNTIME_UID}" in c for c in commands)


def test_entrypoint_and_cmd_are_exec_form_and_serve_liveness() -> None:
    (entrypoint,) = FINAL.all("ENTRYPOINT")
    (cmd,) = FINAL.all("CMD")
    assert exec_form(entrypoint) == ["b2ckeys"]
    assert exec_form(cmd) == EXPECTED_CMD
    scripts = PYPROJECT["project"]["scripts"]
    assert "b2ckeys" in scripts, "the entry point must be an installed console script"
    port = EXPECTED_CMD[-1].rsplit(":", 1)[1].split("/")[0]
    assert any(port in e.arguments.split() for e in FINAL.all("EXPOSE"))


def test_nothing_needs_writing_at_run_time() -> None:
    env = env_values(FINAL)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    # HOME is the one writable path, the Deployment's emptyDir at /tmp.
    assert env.get("HOME") == "/tmp"  # noqa: S108
    assert env.get("PATH", "").startswith("/opt/b2ckeys/bin:")
    builder_env = env_values(BUILDER_STAGES[0])
    assert builder_env.get("PIP_NO_CACHE_DIR") == "1", "no pip cache in any layer"


def test_bytecode_is_compiled_in_the_final_stage_for_what_the_operator_loads() -> None:
    commands = [" ".join(c) for c in run_commands(FINAL)]
    compiles = [c for c in commands if "compile_imported.py" in c]
    assert len(compiles) == 1, commands
    for module in ("b2ckeys.main", "b2ckeys.handlers"):
        assert f" {module}" in compiles[0]


def test_oci_labels() -> None:
    found = labels(FINAL)
    args = {i.arguments.partition("=")[0]: i.arguments.partition("=")[2] for i in FINAL.all("ARG")}
    for name in ("title", "description", "version", "revision", "licenses", "source"):
        assert found.get(f"org.opencontainers.image.{name}"), name
    assert found["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert found["org.opencontainers.image.version"] == "${VERSION}"
    assert args["VERSION"] == PYPROJECT["project"]["version"]


# --- the build context --------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over slash paths."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def in_build_context(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for negated, regex in _dockerignore_rules():
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = negated
    return included


def test_every_copied_source_is_in_the_build_context() -> None:
    for copy in BUILDER_STAGES[0].all("COPY"):
        if copy.arguments.startswith("--from"):
            continue
        for source in shlex.split(copy.arguments)[:-1]:
            path = ROOT / source
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            files = [f for f in files if "__pycache__" not in f.parts]
            assert files, f"{source} is copied but has no files"
            for file in files:
                relative = str(file.relative_to(ROOT))
                assert in_build_context(relative), f"{relative} is excluded by .dockerignore"


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        "tests/unit/test_dockerfile.py",
        ".git/config",
        "operator/b2ckeys/__pycache__/cli.cpython-311.pyc",
        "benchmarks/bench_scale.py",
        "deploy/base/deployment.yaml",
        "operator/b2ckeys_emulators/graph/server.py",
        "crds/trustframeworkkeysets.yaml",
    ],
)
def test_what_the_image_does_not_need_stays_out_of_the_build_context(path: str) -> None:
    assert not in_build_context(path)


def test_the_dockerignore_reading_sees_what_it_lets_in() -> None:
    # The negative cases above mean something only if the same reading admits these.
    for path in (
        "requirements.lock",
        "operator/b2ckeys/cli.py",
        "operator/b2ckeys/graph/client.py",
    ):
        assert in_build_context(path)
