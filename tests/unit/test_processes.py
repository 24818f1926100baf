"""Unit tests for deploy.processes (run for real, with tiny ``sh``/``sleep`` process groups) and
for the pure helpers of deploy.stack (env file, keys, ports).

Whether a process is alive is checked here by reading ``/proc`` directly, not through the module
under test. Every process group a test starts is SIGKILLed at teardown, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy import processes
from deploy.processes import ProcessFailed, ProcessSpec
from deploy.stack import (
    StackPaths,
    StackPorts,
    load_or_create_keys,
    read_env_file,
    write_env_file,
)
from services.common.settings import MIN_PRODUCTION_KEY_LENGTH

# --------------------------------------------------------------------------- /proc helpers


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = proc_stat(int(entry))
        if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., ProcessSpec]]:
    """Start ``sh -c script`` through processes.start; kill its group at teardown."""
    started: list[int] = []

    def run(
        script: str,
        name: str = "tiny",
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ProcessSpec:
        spec = ProcessSpec(
            name=name,
            command=["sh", "-c", script],
            log_path=tmp_path / "logs" / f"{name}.log",
            pid_path=tmp_path / "run" / f"{name}.pid",
            env=env,
            cwd=cwd,
        )
        started.append(processes.start(spec))
        return spec

    yield run
    for pgid in started:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pgid, os.WNOHANG)


def recorded_pid(spec: ProcessSpec) -> int:
    return int(json.loads(spec.pid_path.read_text())["pid"])


# --------------------------------------------------------------------------- start


def test_start_writes_a_pid_file_and_leads_a_new_group(spawn: Callable[..., ProcessSpec]) -> None:
    spec = spawn("sleep 60")

    record = json.loads(spec.pid_path.read_text())
    pid = record["pid"]
    assert record["command"] == ["sh", "-c", "sleep 60"]
    assert record["started"]  # the kernel start time, against pid recycling
    assert os.getpgid(pid) == pid
    assert os.getsid(pid) == pid
    assert os.getpgid(pid) != os.getpgid(0)  # not in the test runner's group


def test_start_passes_env_and_cwd_and_logs_output(
    spawn: Callable[..., ProcessSpec], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    spec = spawn(
        'echo "mark=$DOCQA_TEST_MARK"; pwd; echo "to stderr" >&2',
        env={"DOCQA_TEST_MARK": "xyz"},
        cwd=work,
    )

    assert eventually(lambda: "to stderr" in spec.log_path.read_text())
    log = spec.log_path.read_text()
    assert "mark=xyz" in log
    assert str(work) in log


def test_start_appends_to_an_existing_log(spawn: Callable[..., ProcessSpec]) -> None:
    first = spawn("echo first-run", name="twice")
    assert eventually(lambda: "first-run" in first.log_path.read_text())

    second = spawn("echo second-run", name="twice")

    assert eventually(lambda: "second-run" in second.log_path.read_text())
    assert "first-run" in second.log_path.read_text()


# --------------------------------------------------------------------------- running_pid and stop


def test_stop_kills_the_whole_group_and_removes_the_pid_file(
    spawn: Callable[..., ProcessSpec],
) -> None:
    spec = spawn("sleep 60 & sleep 60")
    pid = recorded_pid(spec)
    assert eventually(lambda: len(live_members(pid)) >= 2)  # the shell and its children

    assert processes.running_pid(spec.pid_path) == pid
    assert processes.stop(spec.pid_path, timeout_s=5) is True

    assert live_members(pid) == []
    assert not spec.pid_path.exists()
    assert processes.running_pid(spec.pid_path) is None


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(
    spawn: Callable[..., ProcessSpec],
) -> None:
    spec = spawn("trap '' TERM; sleep 60 & sleep 60")  # ignored signals are inherited
    pid = recorded_pid(spec)
    assert eventually(lambda: len(live_members(pid)) >= 2)

    assert processes.stop(spec.pid_path, timeout_s=0.3) is True

    assert eventually(lambda: live_members(pid) == [], timeout_s=2)
    assert not spec.pid_path.exists()


def test_stop_twice_is_harmless(spawn: Callable[..., ProcessSpec]) -> None:
    spec = spawn("sleep 60")

    assert processes.stop(spec.pid_path, timeout_s=5) is True
    assert processes.stop(spec.pid_path, timeout_s=5) is False


def test_stop_without_a_pid_file_returns_false(tmp_path: Path) -> None:
    pid_path = tmp_path / "missing.pid"

    assert processes.running_pid(pid_path) is None
    assert processes.stop(pid_path) is False
    assert not pid_path.exists()


@pytest.mark.parametrize("content", ["", "not json", "{}", '{"pid": 0}', '{"pid": -1}'], ids=repr)
def test_unreadable_pid_file_is_not_running_and_is_removed(tmp_path: Path, content: str) -> None:
    pid_path = tmp_path / "bad.pid"
    pid_path.write_text(content)

    assert processes.running_pid(pid_path) is None
    assert processes.stop(pid_path) is False
    assert not pid_path.exists()


def test_pid_file_of_an_exited_process_is_stale(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    pid_path = tmp_path / "stale.pid"
    pid_path.write_text(json.dumps({"pid": finished.pid, "started": "1", "command": ["true"]}))

    assert processes.running_pid(pid_path) is None
    assert processes.stop(pid_path) is False
    assert not pid_path.exists()


def own_start_time() -> str:
    fields = proc_stat(os.getpid())
    assert fields is not None
    return fields[19]


def test_pid_file_naming_a_live_process_with_its_start_time_is_running(tmp_path: Path) -> None:
    pid_path = tmp_path / "me.pid"
    pid_path.write_text(json.dumps({"pid": os.getpid(), "started": own_start_time()}))

    assert processes.running_pid(pid_path) == os.getpid()  # (never stop this one)


def test_recycled_pid_is_not_running_and_is_never_signalled(tmp_path: Path) -> None:
    # the pid now belongs to another process (this test runner) that started at another time
    pid_path = tmp_path / "recycled.pid"
    wrong_start = str(int(own_start_time()) + 12345)
    pid_path.write_text(json.dumps({"pid": os.getpid(), "started": wrong_start}))

    assert processes.running_pid(pid_path) is None
    assert processes.stop(pid_path, timeout_s=1) is False  # and we are still here to assert it
    assert not pid_path.exists()


def test_exited_child_is_not_running_even_before_it_is_reaped(
    spawn: Callable[..., ProcessSpec],
) -> None:
    spec = spawn("exit 0")

    assert eventually(lambda: processes.running_pid(spec.pid_path) is None)


def test_stop_kills_children_left_behind_by_a_dead_leader(
    spawn: Callable[..., ProcessSpec],
) -> None:
    spec = spawn("sleep 60 & exit 0")
    pid = recorded_pid(spec)
    assert eventually(lambda: processes.running_pid(spec.pid_path) is None)
    assert live_members(pid), "the background sleep should still be alive in the group"

    processes.stop(spec.pid_path, timeout_s=2)

    assert eventually(lambda: live_members(pid) == [], timeout_s=0.2)


# --------------------------------------------------------------------------- wait_until_ready


def test_wait_until_ready_returns_once_ready(spawn: Callable[..., ProcessSpec]) -> None:
    spec = spawn("sleep 60")
    calls = []

    def ready() -> bool:
        calls.append(1)
        return len(calls) >= 3

    took = processes.wait_until_ready(spec, ready, timeout_s=10, interval_s=0.01)

    assert len(calls) == 3
    assert took >= 0


def test_wait_until_ready_fails_fast_with_the_log_tail_when_the_process_exits(
    spawn: Callable[..., ProcessSpec],
) -> None:
    spec = spawn("echo booting; echo 'fatal: address already in use' >&2; exit 3", name="early")

    with pytest.raises(ProcessFailed) as caught:
        processes.wait_until_ready(spec, lambda: False, timeout_s=30, interval_s=0.02)

    message = str(caught.value)
    assert "early exited during start-up" in message
    assert "booting" in message
    assert "fatal: address already in use" in message


def test_wait_until_ready_times_out_with_the_log_tail(spawn: Callable[..., ProcessSpec]) -> None:
    spec = spawn("echo still-loading; sleep 60", name="slow")
    assert eventually(lambda: "still-loading" in spec.log_path.read_text())

    with pytest.raises(ProcessFailed) as caught:
        processes.wait_until_ready(spec, lambda: False, timeout_s=0.2, interval_s=0.02)

    message = str(caught.value)
    assert "slow was not ready after" in message
    assert str(spec.log_path) in message
    assert "still-loading" in message


def test_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))

    assert processes.tail(log, lines=3) == "line 97\nline 98\nline 99"
    assert processes.tail(tmp_path / "missing.log") == "(no log)"


# --------------------------------------------------------------------------- ports


def test_free_port_is_free() -> None:
    port = processes.free_port()

    assert 1024 <= port <= 65535
    assert processes.port_is_free(port)


def test_a_listening_port_is_not_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        assert processes.port_is_free(port) is False

    assert processes.port_is_free(port) is True


# --------------------------------------------------------------------------- stack: env file


def test_env_file_round_trip_with_awkward_values(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path / "home")
    keys = {
        "DOCQA_QUERY_KEY": 'it\'s a "key" with  spaces',
        "DOCQA_ADMIN_KEY": "$HOME `id` \\back\\slash; #not-a-comment",
    }

    write_env_file(paths, StackPorts(query=9000, indexing=9001), keys)

    assert read_env_file(paths.env_file) == {
        "DOCQA_QUERY_URL": "http://127.0.0.1:9000",
        "DOCQA_INDEXING_URL": "http://127.0.0.1:9001",
        **keys,
    }
    assert stat.S_IMODE(paths.env_file.stat().st_mode) == 0o600  # it holds the keys


def test_env_file_is_sourceable_by_sh(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path)
    key = 'it\'s $HOME `id` "quoted"'
    write_env_file(paths, StackPorts(), {"DOCQA_QUERY_KEY": key, "DOCQA_ADMIN_KEY": "a"})

    shown = subprocess.run(
        ["sh", "-c", '. "$1"; printf %s "$DOCQA_QUERY_KEY"', "sh", str(paths.env_file)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    ).stdout

    assert shown == key


def test_read_env_file_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "nope") == {}


def test_read_env_file_accepts_hand_written_files(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text(
        "# written by hand\n"
        "\n"
        "export A=plain\n"
        "B='single quoted value'\n"
        '  export C="double quoted"  \n'
        "D=\n"
        "E = spaced\n"
        "# F=commented-out\n"
        "not an assignment\n"
    )

    assert read_env_file(env_file) == {
        "A": "plain",
        "B": "single quoted value",
        "C": "double quoted",
        "D": "",
        "E": "spaced",
    }


# --------------------------------------------------------------------------- stack: keys and ports


def test_new_keys_are_distinct_and_long_enough_for_production(tmp_path: Path) -> None:
    keys = load_or_create_keys(StackPaths(tmp_path))

    assert set(keys) == {"DOCQA_QUERY_KEY", "DOCQA_ADMIN_KEY"}
    assert keys["DOCQA_QUERY_KEY"].startswith("q-")
    assert keys["DOCQA_ADMIN_KEY"].startswith("a-")
    assert keys["DOCQA_QUERY_KEY"] != keys["DOCQA_ADMIN_KEY"]
    assert all(len(k) >= MIN_PRODUCTION_KEY_LENGTH for k in keys.values())
    assert load_or_create_keys(StackPaths(tmp_path)) != keys  # nothing written: fresh again


def test_existing_keys_are_reused(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path)
    keys = load_or_create_keys(paths)
    write_env_file(paths, StackPorts(), keys)

    assert load_or_create_keys(paths) == keys
    assert load_or_create_keys(paths) == keys


def test_one_missing_key_means_a_new_pair(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path)
    paths.env_file.write_text("export DOCQA_QUERY_KEY=q-only\n")

    keys = load_or_create_keys(paths)

    assert keys["DOCQA_QUERY_KEY"] != "q-only"
    assert keys["DOCQA_ADMIN_KEY"]


PORT_VARIABLES = [
    f"DOCQA_UP_{name}_PORT" for name in ("QUERY", "INDEXING", "VLLM", "REDIS", "MILVUS")
]


@pytest.fixture
def no_port_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PORT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_port_env")
def test_stack_ports_default() -> None:
    assert StackPorts.from_env() == StackPorts(
        query=8000, indexing=8001, vllm=8010, redis=6380, milvus=19530
    )


@pytest.mark.usefixtures("no_port_env")
def test_stack_ports_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_UP_QUERY_PORT", "18000")
    monkeypatch.setenv("DOCQA_UP_REDIS_PORT", "16380")

    ports = StackPorts.from_env()

    assert ports == StackPorts(query=18000, indexing=8001, vllm=8010, redis=16380, milvus=19530)


@pytest.mark.usefixtures("no_port_env")
def test_stack_ports_reject_non_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_UP_MILVUS_PORT", "nineteen")

    with pytest.raises(ValueError):
        StackPorts.from_env()
