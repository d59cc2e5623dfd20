"""Starting and stopping b2ckeys' own processes (emulators, the operator) for the demo and the
benchmarks: the same commands a person types, on loopback."""

from __future__ import annotations

import contextlib
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

# Both emulators print their banner within milliseconds; a loaded CI machine gets slack.
BANNER_TIMEOUT = 30.0
# SIGTERM first, as the kubelet does; SIGKILL only when a process ignores it this long.
STOP_TIMEOUT = 15.0


class StartFailed(RuntimeError):
    pass


def b2ckeys_executable() -> str:
    """The `b2ckeys` next to the running interpreter (the project's .venv), else on PATH."""
    here = Path(sys.executable).parent / "b2ckeys"
    return str(here) if here.exists() else shutil.which("b2ckeys") or "b2ckeys"


def read_first_line(stream: IO[str], timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


def _copy(stream: IO[str], sink: IO[str]) -> None:
    for line in stream:
        sink.write(line)
        sink.flush()


def stop(proc: subprocess.Popen[str]) -> float:
    """SIGTERM, then wait; returns the seconds until it exited."""
    started = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.perf_counter() - started


@contextlib.contextmanager
def listening(
    argv: Sequence[str], log: Path, env: Mapping[str, str], banner: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run a server whose first stdout line is `<banner> URL`; yield the URL and the process.

    The rest of its stdout and all of its stderr go to `log`.
    """
    with log.open("w") as sink:
        proc = subprocess.Popen(  # noqa: S603  (our own entry points, fixed arguments)
            list(argv), stdout=subprocess.PIPE, stderr=sink, env=dict(env), text=True
        )
        try:
            assert proc.stdout is not None
            line = read_first_line(proc.stdout, BANNER_TIMEOUT)
            if not line.startswith(banner):
                raise StartFailed(f"{' '.join(argv[:2])} did not start: {line!r} (log: {log})")
            threading.Thread(target=_copy, args=(proc.stdout, sink), daemon=True).start()
            yield line.rsplit(" ", 1)[-1].strip(), proc
        finally:
            stop(proc)


@contextlib.contextmanager
def running(
    argv: Sequence[str], log: Path, env: Mapping[str, str]
) -> Iterator[subprocess.Popen[str]]:
    """Run a process with stdout and stderr in `log` until the block exits."""
    with log.open("w") as sink:
        proc = subprocess.Popen(  # noqa: S603  (our own entry points, fixed arguments)
            list(argv), stdout=sink, stderr=subprocess.STDOUT, env=dict(env), text=True
        )
        try:
            yield proc
        finally:
            stop(proc)
