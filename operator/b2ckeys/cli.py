"""The `b2ckeys` command: each subcommand's implementation is imported only when it runs."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module, function taking argv and returning an exit code, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("b2ckeys.main", "main", "run the operator"),
    "demo": ("b2ckeys_emulators.demo", "main", "run both emulators, the operator and the examples"),
    "graph-emulator": ("b2ckeys_emulators.graph.cli", "main", "serve the B2C key set emulator"),
    "kube-emulator": ("b2ckeys_emulators.kube.cli", "main", "serve an embedded Kubernetes API"),
    "status": ("b2ckeys.kubectl_plugin", "status", "key sets, their condition and B2C's key"),
    "plan": ("b2ckeys.kubectl_plugin", "plan", "what Sync mode would write to B2C now"),
    "sync": ("b2ckeys.kubectl_plugin", "sync", "ask the operator to reconcile a key set now"),
    "disable": ("b2ckeys.key_commands", "disable", "take one key of a key set out of rotation"),
    "enable": ("b2ckeys.key_commands", "enable", "put a disabled key back into rotation"),
    "check-tenant": (
        "b2ckeys.kubectl_plugin",
        "check_tenant",
        "verify a tenant's credentials as the operator would",
    ),
    "conformance": (
        "b2ckeys.conformance.cli",
        "main",
        "check the B2C key set rules b2ckeys relies on against a tenant",
    ),
}
# Installed a second time under this name, kubectl runs it as `kubectl b2ckeys ...`.
KUBECTL_PLUGIN = "kubectl-b2ckeys"


def program_name() -> str:
    """How the person typed the command, for usage and error lines."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "kubectl b2ckeys" if invoked == KUBECTL_PLUGIN else "b2ckeys"


def _usage() -> str:
    lines = [f"usage: {program_name()} <command> [options]", "", "commands:"]
    lines += [f"  {name:<16} {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"{program_name()}: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function_name, _ = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not module_name.startswith(error.name.split(".")[0]):
            raise
        # The operator image ships the operator only; the emulators come with a source install.
        print(
            f"b2ckeys: `{name}` needs the emulators, which this installation lacks "
            "(pip install 'b2ckeys[emulators]' from a source checkout)",
            file=sys.stderr,
        )
        return 2
    entry: Callable[[Sequence[str]], int] = getattr(module, function_name)
    return entry(rest)


if __name__ == "__main__":
    sys.exit(main())
