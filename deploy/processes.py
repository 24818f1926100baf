"""Background processes with pid files, each in its own process group.

Every process we start leads a new session (``start_new_session``), so stopping it signals the
whole group: vLLM's engine workers and uvicorn's children go with their parent and nothing is
orphaned. A pid file records the pid and a start marker, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ReadyCheck = Callable[[], bool]


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    command: Sequence[str]
    log_path: Path
    pid_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None


class ProcessFailed(RuntimeError):
    pass


def start(spec: ProcessSpec) -> int:
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    spec.pid_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(spec.env or {})}
    with open(spec.log_path, "ab") as log:
        process = subprocess.Popen(
            list(spec.command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=spec.cwd,
            start_new_session=True,
        )
    record = {
        "pid": process.pid,
        "started": _start_time(process.pid),
        "command": list(spec.command),
    }
    spec.pid_path.write_text(json.dumps(record))
    return process.pid


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a pid: tells our process from a later one with the same pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return None


def running_pid(pid_path: Path) -> int | None:
    try:
        record = json.loads(pid_path.read_text())
    except (OSError, ValueError):
        return None
    pid = int(record.get("pid", 0))
    if pid <= 0 or _start_time(pid) is None:
        return None
    if record.get("started") and _start_time(pid) != record["started"]:
        return None
    if _is_zombie(pid):
        return None
    return pid


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def stop(pid_path: Path, *, timeout_s: float = 20.0) -> bool:
    """SIGTERM the process group, then SIGKILL what is left; True if something was running."""
    pid = running_pid(pid_path) or _orphaned_group(pid_path)
    if pid is None:
        pid_path.unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _group_alive(pid):
        _reap(pid)
        time.sleep(0.2)
    if _group_alive(pid):
        _signal_group(pid, signal.SIGKILL)
        time.sleep(0.3)
    _reap(pid)
    pid_path.unlink(missing_ok=True)
    return True


def _orphaned_group(pid_path: Path) -> int | None:
    """The recorded group, if its leader died but members (e.g. vLLM's engine workers) live on.

    Linux never hands out a pid equal to the id of a process group that still exists, so a live
    group with the recorded id is ours.
    """
    try:
        pgid = int(json.loads(pid_path.read_text()).get("pid", 0))
    except (OSError, ValueError, AttributeError):
        return None
    return pgid if pgid > 0 and _group_alive(pgid) else None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return bool(group_members(pgid))


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    return [p for p in _all_pids() if _pgid_of(p) == pgid and not _is_zombie(p)]


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_until_ready(
    spec: ProcessSpec, ready: ReadyCheck, *, timeout_s: float, interval_s: float = 0.5
) -> float:
    """Poll ``ready`` until it holds; fail fast, with the log's tail, if the process dies."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if ready():
            return time.monotonic() - started
        if running_pid(spec.pid_path) is None:
            raise ProcessFailed(f"{spec.name} exited during start-up:\n{tail(spec.log_path)}")
        time.sleep(interval_s)
    raise ProcessFailed(
        f"{spec.name} was not ready after {timeout_s:.0f}s (log: {spec.log_path}):\n"
        + tail(spec.log_path)
    )


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
