"""Debian packages the local stack needs (redis-server, wrk, chromium), installed with apt when
missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

Log = Callable[[str], None]


def ensure_redis_server(log: Log = print) -> str:
    """``redis-server`` from Debian's package, installed with apt when missing."""
    return ensure_debian_tool("redis-server", "redis-server", log)


def apt_install(package: str, log: Log = print, *, missing: str = "") -> None:
    """Install Debian's ``package`` with apt (as root; otherwise say what to run)."""
    if os.geteuid() != 0:
        raise RuntimeError(
            f"{missing or package} is missing: run `sudo apt-get install -y {package}`"
        )
    log(f"installing {package} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", package],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def ensure_debian_tool(command: str, package: str, log: Log = print) -> str:
    """The path of ``command``, installing Debian's ``package`` with apt when it is missing."""
    found = shutil.which(command)
    if found:
        return found
    apt_install(package, log, missing=command)
    found = shutil.which(command)
    if not found:
        raise RuntimeError(f"apt-get installed {package} but {command} is not on PATH")
    return found
