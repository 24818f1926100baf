"""Render a kustomization in Python: the subset of kustomize that k8s/ uses, and nothing more.

CI has neither kubectl nor the kustomize binary, so the tests render the overlays with this module
and validate what it returns. It implements exactly what the files under k8s/ use and refuses
everything else with an error (so a new kustomize feature in k8s/ fails the tests loudly instead
of rendering wrong):

- ``resources``: YAML files (one or more documents) and directories holding a kustomization;
- ``namespace``: set on every namespaced object rendered at that level;
- ``secretGenerator`` with ``envs`` files, and ``generatorOptions.disableNameSuffixHash: true``;
- ``patches`` with ``path`` (strategic merge; the target is the patch's own kind and name);
- ``images``: ``name`` with ``newName`` and/or ``newTag``, on containers and initContainers.

Usage: ``python k8s/render.py k8s/overlays/dev [--examples]`` prints the objects as YAML.
``kubectl kustomize`` (or ``kubectl apply -k``) remains what operators run.
"""

from __future__ import annotations

import argparse
import base64
import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_KEYS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "secretGenerator",
        "generatorOptions",
        "patches",
        "images",
    }
)
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
)
# Strategic-merge keys of the lists the patches touch (from the Kubernetes API's patchMergeKey);
# any other list is replaced by the patch's list, as kustomize does for lists without a key.
LIST_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}
EXAMPLE_SUFFIX = ".example"


class RenderError(ValueError):
    """The kustomization is invalid, or uses something this renderer does not implement."""


def render(directory: Path, *, use_examples: bool = False) -> list[Obj]:
    """Every object the kustomization in ``directory`` produces, in load order.

    ``use_examples`` reads ``<file>.example`` for each secretGenerator env file: the committed
    placeholders, instead of an operator's git-ignored real secrets.
    """
    directory = Path(directory)
    kustomization = _load_kustomization(directory)
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        objects.extend(_load_resource(directory / entry, use_examples=use_examples))
    objects.extend(
        _generate_secrets(
            directory,
            kustomization.get("secretGenerator", []),
            kustomization.get("generatorOptions", {}),
            use_examples=use_examples,
        )
    )
    _check_unique(objects, directory)
    for patch in kustomization.get("patches", []):
        _apply_patch_file(objects, directory, patch)
    if "namespace" in kustomization:
        _set_namespace(objects, str(kustomization["namespace"]))
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    return objects


def _load_kustomization(directory: Path) -> Obj:
    for name in KUSTOMIZATION_FILES:
        path = directory / name
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict):
                raise RenderError(f"{path}: not a mapping")
            unknown = set(data) - SUPPORTED_KEYS
            if unknown:
                raise RenderError(f"{path}: unsupported kustomization fields {sorted(unknown)}")
            return data
    raise RenderError(f"{directory}: no kustomization.yaml")


def load_documents(path: Path) -> list[Obj]:
    """The non-empty YAML documents of a file; each must be a Kubernetes object."""
    documents = []
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if document is None:
            continue
        if not isinstance(document, dict) or not {"apiVersion", "kind", "metadata"} <= set(
            document
        ):
            raise RenderError(f"{path}: a document is not a Kubernetes object")
        documents.append(document)
    return documents


def _load_resource(path: Path, *, use_examples: bool) -> list[Obj]:
    if path.is_dir():
        return render(path, use_examples=use_examples)
    if path.is_file():
        return load_documents(path)
    raise RenderError(f"resource {path} does not exist")


def _generate_secrets(
    directory: Path, generators: list[Obj], options: Obj, *, use_examples: bool
) -> list[Obj]:
    if generators and options.get("disableNameSuffixHash") is not True:
        raise RenderError(
            f"{directory}: generators need generatorOptions.disableNameSuffixHash: true "
            "(name hashes and the reference rewriting they need are not implemented)"
        )
    secrets = []
    for generator in generators:
        unknown = set(generator) - {"name", "envs", "type"}
        if unknown:
            raise RenderError(f"{directory}: unsupported secretGenerator fields {sorted(unknown)}")
        data: dict[str, str] = {}
        for env_file in generator.get("envs", []):
            path = directory / env_file
            if use_examples:
                path = path.with_name(path.name + EXAMPLE_SUFFIX)
            for key, value in read_env_file(path).items():
                data[key] = base64.b64encode(value.encode()).decode()
        secrets.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generator["name"]},
                "type": generator.get("type", "Opaque"),
                "data": data,
            }
        )
    return secrets


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as kustomize reads them: blank lines and ``#`` comments skipped, the
    value taken literally (no quotes removed)."""
    if not path.is_file():
        raise RenderError(
            f"{path} is missing: copy {path.name}{EXAMPLE_SUFFIX} to it and fill it in"
            if not path.name.endswith(EXAMPLE_SUFFIX)
            else f"{path} is missing"
        )
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not key:
            raise RenderError(f"{path}:{number}: expected KEY=VALUE")
        values[key] = value
    return values


def _key(obj: Obj) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _check_unique(objects: list[Obj], directory: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = _key(obj)
        if key in seen:
            raise RenderError(f"{directory}: {key} is defined twice")
        seen.add(key)


def _apply_patch_file(objects: list[Obj], directory: Path, entry: Obj) -> None:
    if set(entry) != {"path"}:
        raise RenderError(f"{directory}: only `patches: - path: FILE` is supported, got {entry}")
    path = directory / entry["path"]
    documents = load_documents(path)
    if len(documents) != 1:
        raise RenderError(f"{path}: a patch file holds exactly one object")
    patch = documents[0]
    targets = [
        obj
        for obj in objects
        if obj["kind"] == patch["kind"] and obj["metadata"]["name"] == patch["metadata"]["name"]
    ]
    if not targets:
        raise RenderError(f"{path}: no {patch['kind']}/{patch['metadata']['name']} to patch")
    for target in targets:
        strategic_merge(target, patch)


def strategic_merge(target: Obj, patch: Obj) -> Obj:
    """Merge ``patch`` into ``target`` in place: maps recursively, ``null`` deletes a key, keyed
    lists (containers, env, volumes, ...) by their merge key, other lists replaced."""
    for key, value in patch.items():
        if key.startswith("$"):
            raise RenderError(f"patch directive {key} is not supported")
        current = target.get(key)
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(current, dict):
            strategic_merge(current, value)
        elif isinstance(value, list) and isinstance(current, list) and _merge_key(key, value):
            target[key] = _merge_list(current, value, _merge_key(key, value))
        else:
            target[key] = copy.deepcopy(value)
    return target


def _merge_key(field: str, items: list[Any]) -> str:
    if field == "ports" and items and all(isinstance(i, dict) for i in items):
        return "containerPort" if all("containerPort" in i for i in items) else "port"
    return LIST_MERGE_KEYS.get(field, "")


def _merge_list(current: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    merged = list(current)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise RenderError(f"list item {item!r} lacks its merge key {merge_key!r}")
        delete = item.get("$patch") == "delete"
        rest = {k: v for k, v in item.items() if k != "$patch"}
        index = next(
            (i for i, old in enumerate(merged) if old.get(merge_key) == item[merge_key]), None
        )
        if delete:
            if index is not None:
                merged.pop(index)
        elif index is None:
            merged.append(copy.deepcopy(rest))
        else:
            strategic_merge(merged[index], rest)
    return merged


def _set_namespace(objects: list[Obj], namespace: str) -> None:
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED_KINDS:
            obj["metadata"]["namespace"] = namespace


def pod_specs(obj: Obj) -> Iterator[Obj]:
    """The pod spec(s) inside a workload: Pod, Deployment-like templates, Job, CronJob."""
    spec = obj.get("spec") or {}
    if obj["kind"] == "Pod":
        yield spec
    elif obj["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif isinstance(spec.get("template"), dict) and "spec" in spec["template"]:
        yield spec["template"]["spec"]


def containers(obj: Obj) -> Iterator[Obj]:
    for pod in pod_specs(obj):
        yield from pod.get("initContainers", [])
        yield from pod.get("containers", [])


def split_image(image: str) -> tuple[str, str]:
    """``name[:tag][@digest]`` → (name, the rest including its ``:`` or ``@``)."""
    at = image.find("@")
    without_digest = image if at < 0 else image[:at]
    colon = without_digest.rfind(":")
    if colon > without_digest.rfind("/"):
        return image[:colon], image[colon:]
    if at >= 0:
        return image[:at], image[at:]
    return image, ""


def _set_image(objects: list[Obj], entry: Obj) -> None:
    unknown = set(entry) - {"name", "newName", "newTag"}
    if unknown:
        raise RenderError(f"unsupported images fields {sorted(unknown)}")
    for obj in objects:
        for container in containers(obj):
            name, suffix = split_image(container["image"])
            if name != entry["name"]:
                continue
            new_suffix = f":{entry['newTag']}" if "newTag" in entry else suffix
            container["image"] = f"{entry.get('newName', name)}{new_suffix}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a directory holding a kustomization.yaml")
    parser.add_argument(
        "--examples", action="store_true", help="read <env file>.example for secretGenerator"
    )
    args = parser.parse_args(argv)
    try:
        objects = render(args.directory, use_examples=args.examples)
    except RenderError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(objects, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
