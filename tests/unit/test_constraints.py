"""deploy/constraints.txt pins every dependency of pyproject.toml, inside pyproject's ranges.

A dependency missing from the constraints would float to whatever PyPI has on the day of a
fresh install or a CI run; a pin outside pyproject's range would make that install fail.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [req for group in project["optional-dependencies"].values() for req in group]
    return [Requirement(req) for req in [*project["dependencies"], *extras]]


@pytest.mark.parametrize("requirement", _requirements(), ids=str)
def test_every_dependency_is_pinned_within_its_range(requirement: Requirement) -> None:
    pins = _pins()
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{name} is not in deploy/constraints.txt: run `make constraints`"
    assert requirement.specifier.contains(pins[name], prereleases=True), (
        f"{name}=={pins[name]} is outside pyproject's {requirement.specifier}"
    )


def test_the_install_script_uses_the_constraints() -> None:
    bootstrap = (ROOT / "deploy" / "bootstrap.sh").read_text()
    assert "-c deploy/constraints.txt" in bootstrap
    assert "deploy/constraints.txt" in bootstrap.split("sha256sum")[0]  # a new pin reinstalls
