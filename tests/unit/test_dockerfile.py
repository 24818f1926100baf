"""deploy/Dockerfile, checked without a Docker engine: it parses, every path it copies exists in the
build context (and is not excluded by .dockerignore), base images are pinned, the final image runs
as a non-root user with no build tools, and its entrypoint runs real `docqa` subcommands."""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from pydantic import ValidationError

from deploy import vllm_cpu
from services.cli import build_parser
from services.common.settings import (
    DEV_ADMIN_KEY,
    DEV_QUERY_KEY,
    IndexingSettings,
    QuerySettings,
)

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
# python:<major>.<minor>.<patch>-slim-<debian release>: an exact release, never a moving tag
PINNED_PYTHON = re.compile(r"^python:3\.1[12]\.\d+-slim-(bookworm|trixie)$")
BUILD_TOOLS = re.compile(
    r"\b(build-essential|gcc|g\+\+|clang|make|cmake|autoconf|pkg-config|git|\S+-dev)\b"
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == instruction]


def stages() -> list[Stage]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    result: list[Stage] = []
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            parts = value.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            result.append(Stage(base=parts[0], name=name))
        elif instruction not in ("COMMENT",):
            assert result, f"{instruction} before the first FROM"
            result[-1].instructions.append((instruction, value))
    return result


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"{value}: use the exec (JSON) form"
    return [str(part) for part in parsed]


def copy_sources(value: str) -> tuple[list[str], bool]:
    """(sources, from another stage) of a COPY/ADD value, flags removed."""
    words = exec_form(value) if value.lstrip().startswith("[") else value.split()
    flags = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1], any(f.startswith("--from=") for f in flags)


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes ``path`` or a directory above it. fnmatch's ``*`` also
    crosses ``/``, so this errs towards "excluded"; ``!`` exceptions are not used (or handled)."""
    assert not any(p.startswith("!") for p in patterns), "exceptions need a real matcher"
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern):
                return True
            name = prefix.rsplit("/", 1)[-1]
            if pattern.startswith("**/") and fnmatch.fnmatch(name, pattern[3:]):
                return True
    return False


def test_dockerfile_parses_into_named_stages() -> None:
    found = stages()
    assert [s.name for s in found] == ["builder", "vllm-cpu", "runtime"]


def test_base_images_are_pinned_to_exact_releases() -> None:
    for stage in stages():
        assert PINNED_PYTHON.match(stage.base), f"{stage.name}: {stage.base} is not pinned"
    # the venv built in `builder` is copied into `runtime`: same interpreter, same paths
    assert len({s.base for s in stages()}) == 1


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    patterns = dockerignore_patterns()
    checked = 0
    for stage in stages():
        for instruction, value in stage.instructions:
            if instruction not in ("COPY", "ADD"):
                continue
            sources, from_stage = copy_sources(value)
            if from_stage:
                continue
            for source in sources:
                assert not source.startswith(("http://", "https://")), "no remote ADD"
                assert (REPO / source).exists(), f"{instruction} {source}: not in the repository"
                assert not ignored(source, patterns), f"{source} is excluded by .dockerignore"
                checked += 1
    assert checked >= 5


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".git/config",
        ".docqa/env",
        ".pytest_cache/v",
        "services/__pycache__/cli.cpython-311.pyc",
        "bench/results/pool.json",
        "k8s/overlays/prod/secrets.env",
    ):
        assert ignored(path, patterns), f"{path} would be sent to the builder"


@pytest.mark.parametrize("stage_name", ["runtime", "vllm-cpu"])
def test_images_run_as_non_root_without_build_tools(stage_name: str) -> None:
    stage = next(s for s in stages() if s.name == stage_name)
    users = stage.values("USER")
    assert users, f"{stage_name} sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    # numeric, so Kubernetes' runAsNonRoot can verify it without a runAsUser
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]}"
    for run in stage.values("RUN"):
        assert not BUILD_TOOLS.search(run), f"build tools in {stage_name}: {run}"
    assert not stage.values("HEALTHCHECK"), "Kubernetes probes do the health checking"


def test_the_app_image_is_the_default_target() -> None:
    assert stages()[-1].name == "runtime"  # `docker build` without --target builds the last


def _env(stage: Stage) -> dict[str, str]:
    """The stage's ENV (``KEY=VALUE`` pairs, optionally double-quoted)."""
    env: dict[str, str] = {}
    for value in stage.values("ENV"):
        pairs = re.findall(r'(\w+)=("[^"]*"|\S+)', value)
        env.update({key: raw.strip('"') for key, raw in pairs})
    return env


def _image_docqa_env() -> dict[str, str]:
    env = _env(stages()[-1])
    return {name: value for name, value in env.items() if name.startswith("DOCQA_")}


def test_final_image_sets_thread_counts_and_listens_on_all_interfaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _env(stages()[-1])
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert _image_docqa_env() == {
        "DOCQA_SERVER_HOST": "0.0.0.0",
        "DOCQA_ENVIRONMENT": "production",
        "DOCQA_SERVER_ADMIN_PORT": "9090",
    }
    _clear_docqa_env(monkeypatch)
    for name, value in _image_docqa_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DOCQA_AUTH_QUERY_KEYS", "q" * 30)
    monkeypatch.setenv("DOCQA_AUTH_ADMIN_KEYS", "a" * 30)
    # the settings really are read by those names
    for settings in (QuerySettings(), IndexingSettings()):
        assert settings.server.host == "0.0.0.0"
        assert settings.environment == "production"
        assert settings.server.admin_port == 9090 != settings.server.port


def _clear_docqa_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DOCQA_"):
            monkeypatch.delenv(name)


def test_the_image_refuses_to_start_with_the_development_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clear_docqa_env(monkeypatch)
    for name, value in _image_docqa_env().items():
        monkeypatch.setenv(name, value)
    # no keys given: development would have filled in the dev keys; production leaves them out
    # (and the lifespan refuses to start if the Redis key store is empty: test_production_way_in)
    assert QuerySettings().auth.admin_keys == []
    monkeypatch.setenv("DOCQA_AUTH_QUERY_KEYS", DEV_QUERY_KEY)
    monkeypatch.setenv("DOCQA_AUTH_ADMIN_KEYS", DEV_ADMIN_KEY)
    with pytest.raises(ValidationError, match="development or short key"):
        IndexingSettings()


def test_the_image_exposes_the_public_and_admin_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_docqa_env(monkeypatch)
    exposed = {int(port) for value in stages()[-1].values("EXPOSE") for port in value.split()}
    admin_port = int(_image_docqa_env()["DOCQA_SERVER_ADMIN_PORT"])
    assert exposed == {QuerySettings().server.port, IndexingSettings().server.port, admin_port}


def test_entrypoint_runs_a_real_docqa_subcommand() -> None:
    final = stages()[-1]
    assert exec_form(final.values("ENTRYPOINT")[-1]) == ["docqa"]
    command = exec_form(final.values("CMD")[-1])
    assert command == ["serve", "query"]
    build_parser().parse_args(command)  # exits (fails the test) on an unknown subcommand


@pytest.mark.parametrize("service", ["query", "indexing"])
def test_image_serves_both_services(service: str) -> None:
    args = build_parser().parse_args(["serve", service])
    assert args.service == service


def test_vllm_cpu_image_runs_the_recipe() -> None:
    stage = next(s for s in stages() if s.name == "vllm-cpu")
    argv = exec_form(stage.values("ENTRYPOINT")[-1]) + exec_form(stage.values("CMD")[-1])
    assert argv == vllm_cpu.serve_command(
        Path("/opt/vllm/bin/python"),
        Path("/models/smollm2-135m-instruct"),
        host="0.0.0.0",
        port=8000,
    )
    env = _env(stage)
    recipe = vllm_cpu.serve_env(Path("/tmp/.cache"))
    for name in ("VLLM_CPU_KVCACHE_SPACE", "HF_HUB_OFFLINE", "VLLM_NO_USAGE_STATS"):
        assert env[name] == recipe[name], name


def test_the_image_copies_every_installed_package() -> None:
    """pyproject's package list and the image's COPY lines agree: a package left out would
    install fine and fail on the first import inside the container."""
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    text = DOCKERFILE.read_text()
    for package in packages:
        assert f"COPY {package} ./{package}" in text, package
