"""k8s/: each kustomization renders, validates offline against the Kubernetes schemas, and agrees
with the code it deploys (services/common/settings.py, services/cli.py, deploy/vllm_cpu.py).

kubectl and kustomize are not available in CI: k8s/render.py renders the subset of kustomize the
manifests use (and refuses anything else), and kubernetes-validate checks every object against the
pinned Kubernetes version's strict schemas; custom resources (Milvus, ScaledObject) are skipped.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import inspect
import math
import os
import re
import secrets
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
from pydantic import BaseModel, ValidationError

from deploy import vllm_cpu
from services import cli
from services.common import serving
from services.common.settings import (
    MIN_PRODUCTION_KEY_LENGTH,
    CommonSettings,
    IndexingSettings,
    QuerySettings,
    ServerSettings,
)

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
# The Kubernetes release the manifests must be valid for (kubernetes-validate ships its schemas).
K8S_VERSION = "1.33.0"
OVERLAYS = ("overlays/dev", "overlays/prod", "overlays/keda")
KUSTOMIZATIONS = (*OVERLAYS, "jobs/ingest")
# A kustomization applied into an overlay's namespace, using that overlay's ConfigMap, Secret, PVCs.
APPLIED_AFTER = {"jobs/ingest": "overlays/prod"}
CUSTOM_RESOURCES = {("milvus.io/v1beta1", "Milvus"), ("keda.sh/v1alpha1", "ScaledObject")}
NAMESPACE = "docqa"
# Containers allowed a writable root filesystem, and why: see the comment in the manifest.
WRITABLE_ROOT = {"milvus"}
REQUIRED_SETTINGS = {
    "DOCQA_ENVIRONMENT",
    "DOCQA_AUTH_QUERY_KEYS",
    "DOCQA_AUTH_ADMIN_KEYS",
    "DOCQA_MILVUS_URI",
    "DOCQA_REDIS_URL",
}
REQUIRED_QUERY_SETTINGS = {"DOCQA_LLM_ENDPOINTS", "DOCQA_LLM_MODEL"}
DATA_STORE_CLIENTS = {"query-api", "indexing-api", "ingest"}
NAME_LABEL = "app.kubernetes.io/name"

Obj = dict[str, Any]


def _load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_render", K8S / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


render = _load_renderer()


@cache
def _rendered(kustomization: str) -> tuple[Obj, ...]:
    return tuple(render.render(K8S / kustomization, use_examples=True))


def objects(kustomization: str) -> list[Obj]:
    """A fresh copy of what the kustomization renders (with the committed example secrets)."""
    return copy.deepcopy(list(_rendered(kustomization)))


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_template(obj: Obj) -> Obj:
    spec = obj["spec"]
    return spec["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else spec["template"]


def workloads(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if next(render.pod_specs(o), None) is not None]


def container(obj: Obj, name: str) -> Obj:
    return next(c for c in render.containers(obj) if c["name"] == name)


def is_docqa_image(image: str) -> bool:
    return render.split_image(image)[0].rsplit("/", 1)[-1] == "docqa"


def docqa_containers(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in workloads(objs):
        for c in render.containers(obj):
            if is_docqa_image(c["image"]):
                yield obj, c


def settings_class(c: Obj) -> type[CommonSettings]:
    args = c.get("args", [])
    if args[:2] == ["serve", "query"]:
        return QuerySettings
    if args[:2] == ["serve", "indexing"] or args[:1] == ["ingest"]:
        return IndexingSettings
    raise AssertionError(f"container {c['name']}: unknown docqa command {args}")


def arg_value(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


# ----------------------------------------------------------------------------- quantities, labels

_QUANTITY = re.compile(r"^(\d+(\.\d+)?)(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$")
_SUFFIX = {
    None: 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a number (the formats the manifests use)."""
    match = _QUANTITY.match(str(value))
    assert match, f"{value!r} is not a resource quantity"
    return float(match.group(1)) * _SUFFIX[match.group(3)]


def selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels/matchExpressions, or a Service's plain map) against labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pods_selected(selector: Obj, objs: list[Obj]) -> set[str]:
    """The app names of the rendered pod templates a selector matches."""
    selected = set()
    for obj in workloads(objs):
        labels = pod_template(obj)["metadata"].get("labels", {})
        if selector_matches(selector, labels):
            selected.add(labels.get(NAME_LABEL, obj["metadata"]["name"]))
    return selected


# ----------------------------------------------------------------------------- settings parity


def settings_env_names(*models: type[BaseModel]) -> set[str]:
    """Every environment variable the settings models read: ``DOCQA_<FIELD>`` for a top-level
    field, ``DOCQA_<GROUP>_<FIELD>`` for a field of a nested group (env_nested_delimiter="_")."""
    names = set()
    for model in models:
        for field_name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                names |= {f"DOCQA_{field_name}_{sub}".upper() for sub in annotation.model_fields}
            else:
                names.add(f"DOCQA_{field_name}".upper())
    return names


SETTINGS_ENV_NAMES = frozenset(settings_env_names(IndexingSettings, QuerySettings))


def docqa_env_names(objs: list[Obj]) -> dict[str, list[str]]:
    """DOCQA_* names set anywhere (ConfigMap data, Secret data/stringData, container env),
    each with the objects that set it."""
    found: dict[str, list[str]] = {}
    for obj in objs:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "ConfigMap":
            names = list(obj.get("data") or {})
        elif obj["kind"] == "Secret":
            names = [*(obj.get("data") or {}), *(obj.get("stringData") or {})]
        else:
            names = [e["name"] for c in render.containers(obj) for e in c.get("env", [])]
        for name in names:
            if name.upper().startswith("DOCQA_"):
                found.setdefault(name, []).append(where)
    return found


def unknown_settings(objs: list[Obj], valid: frozenset[str] = SETTINGS_ENV_NAMES) -> dict[str, Any]:
    """The DOCQA_* names the manifests set that no settings model reads, with where they are."""
    return {n: where for n, where in docqa_env_names(objs).items() if n.upper() not in valid}


def _config_data(objs: list[Obj], kind: str, name: str) -> dict[str, str]:
    obj = find(objs, kind, name)
    if kind == "ConfigMap":
        return dict(obj.get("data") or {})
    data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    return {**data, **(obj.get("stringData") or {})}


def effective_env(c: Obj, objs: list[Obj]) -> dict[str, str]:
    """The environment a container gets: envFrom ConfigMaps/Secrets, then env (resourceFieldRef
    resolved as the kubelet does for limits.cpu; other downward-API values are placeholders)."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        assert "prefix" not in source, "envFrom prefixes would hide settings from the parity test"
        if "configMapRef" in source:
            env.update(_config_data(objs, "ConfigMap", source["configMapRef"]["name"]))
        else:
            env.update(_config_data(objs, "Secret", source["secretRef"]["name"]))
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "resourceFieldRef" in item["valueFrom"]:
            ref = item["valueFrom"]["resourceFieldRef"]
            assert ref.get("containerName", c["name"]) == c["name"]
            assert ref["resource"] == "limits.cpu", ref
            cpus = quantity(c["resources"]["limits"]["cpu"]) / quantity(ref.get("divisor", "1"))
            env[item["name"]] = str(math.ceil(cpus))
        else:
            env[item["name"]] = "<downward-api>"
    return env


# ----------------------------------------------------------------------------- render + validate


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_and_validates_offline(kustomization: str) -> None:
    errors = []
    for obj in objects(kustomization):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES:
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{where}: no Kubernetes {K8S_VERSION} schema (an unlisted custom kind?)")
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{where}: {path}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(render.RenderError, match="commonLabels"):
        render.render(tmp_path)


def test_renderer_needs_the_real_secrets_file(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "secretGenerator:\n  - name: s\n    envs: [secrets.env]\n"
        "generatorOptions:\n  disableNameSuffixHash: true\n"
    )
    (tmp_path / "secrets.env.example").write_text("# placeholders\nDOCQA_REDIS_URL=redis://r/0\n")
    with pytest.raises(render.RenderError, match=r"copy secrets\.env\.example"):
        render.render(tmp_path)
    (secret,) = render.render(tmp_path, use_examples=True)
    assert base64.b64decode(secret["data"]["DOCQA_REDIS_URL"]) == b"redis://r/0"


def test_strategic_merge_semantics() -> None:
    target = {
        "spec": {
            "replicas": 3,
            "containers": [{"name": "a", "args": ["x"], "env": [{"name": "K", "value": "1"}]}],
        }
    }
    patch = {
        "spec": {
            "replicas": None,
            "containers": [{"name": "a", "args": ["y"], "env": [{"name": "L", "value": "2"}]}],
        }
    }
    merged = render.strategic_merge(target, patch)
    assert "replicas" not in merged["spec"]
    assert merged["spec"]["containers"] == [
        {
            "name": "a",
            "args": ["y"],
            "env": [{"name": "K", "value": "1"}, {"name": "L", "value": "2"}],
        }
    ]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_everything_lives_in_the_docqa_namespace(kustomization: str) -> None:
    for obj in objects(kustomization):
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_images_are_pinned(kustomization: str) -> None:
    images = [
        c["image"] for obj in workloads(objects(kustomization)) for c in render.containers(obj)
    ]
    images += [
        o["spec"]["components"]["image"] for o in objects(kustomization) if o["kind"] == "Milvus"
    ]
    for image in images:
        _, suffix = render.split_image(image)
        assert suffix, f"{image}: no tag (kustomize `images` must set one)"
        assert suffix != ":latest", f"{image}: pin a version, not latest"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_container_has_requests_and_limits(kustomization: str) -> None:
    for obj in workloads(objects(kustomization)):
        for c in render.containers(obj):
            where = f"{obj['metadata']['name']}/{c['name']}"
            resources = c.get("resources", {})
            for resource in ("cpu", "memory"):
                request = quantity(resources["requests"][resource])
                limit = quantity(resources["limits"][resource])
                assert request <= limit, f"{where}: {resource} request above its limit"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_pods_and_containers_are_locked_down(kustomization: str) -> None:
    for obj in workloads(objects(kustomization)):
        pod = next(render.pod_specs(obj))
        where = obj["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] != 0, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in render.containers(obj):
            ctx = c["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            if c["name"] in WRITABLE_ROOT:
                continue
            assert ctx["readOnlyRootFilesystem"] is True, f"{where}/{c['name']}"
            if is_docqa_image(c["image"]) or c["name"] == "vllm":
                tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
                assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{where}: no /tmp emptyDir"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_docqa_pods_get_no_service_link_env_vars(kustomization: str) -> None:
    # A Service named docqa-* would otherwise inject DOCQA_*_PORT=tcp://... into every pod.
    for obj in workloads(objects(kustomization)):
        assert next(render.pod_specs(obj))["enableServiceLinks"] is False, obj["metadata"]["name"]


# ----------------------------------------------------------------------------- wiring


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_selectors_and_references_resolve(kustomization: str) -> None:
    own = objects(kustomization)
    objs = own + (objects(APPLIED_AFTER[kustomization]) if kustomization in APPLIED_AFTER else [])
    operator_managed = {"milvus-ingress"} if any(o["kind"] == "Milvus" for o in objs) else set()
    for _, c in docqa_containers(own):
        effective_env(c, objs)  # every envFrom ConfigMap and Secret exists
    for obj in own:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "Service":
            assert pods_selected(obj["spec"]["selector"], objs), f"Service/{name} selects no pods"
        elif kind == "PodDisruptionBudget":
            assert pods_selected(obj["spec"]["selector"], objs), f"PDB/{name} selects no pods"
        elif kind == "NetworkPolicy" and name not in operator_managed:
            assert pods_selected(obj["spec"]["podSelector"], objs), f"{name} selects no pods"
        elif kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            find(objs, obj["spec"]["scaleTargetRef"]["kind"], obj["spec"]["scaleTargetRef"]["name"])
    for obj in workloads(own):
        pod = next(render.pod_specs(obj))
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                find(objs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
            if "configMap" in volume:
                find(objs, "ConfigMap", volume["configMap"]["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_named_ports_exist(overlay: str) -> None:
    objs = objects(overlay)
    for obj in workloads(objs):
        for c in render.containers(obj):
            names = {p["name"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                assert port is None or isinstance(port, int) or port in names, (c["name"], probe)
    for service in (o for o in objs if o["kind"] == "Service"):
        names = _port_names(service["spec"]["selector"], objs)
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert isinstance(target, int) or target in names, (service["metadata"]["name"], target)


def _port_names(selector: Obj, objs: list[Obj]) -> set[str]:
    """The named container ports of the pods a selector matches."""
    return {
        port["name"]
        for w in workloads(objs)
        if selector_matches(selector, pod_template(w)["metadata"].get("labels", {}))
        for c in render.containers(w)
        for port in c.get("ports", [])
    }


def _uvicorn_grace_s(c: Obj, objs: list[Obj]) -> int:
    """uvicorn's graceful-shutdown timeout as the container gets it (the setting's default when
    unset), after checking that `docqa serve` really passes the setting to uvicorn."""
    assert "serving.run(app, settings," in inspect.getsource(cli.cmd_serve)
    source = inspect.getsource(serving.build_servers)
    assert "timeout_graceful_shutdown=settings.server.shutdown_timeout_s" in source
    default = ServerSettings.model_fields["shutdown_timeout_s"].default
    return int(effective_env(c, objs).get("DOCQA_SERVER_SHUTDOWN_TIMEOUT_S", default))


def _pre_stop_sleep_s(c: Obj) -> int:
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    return int(command[1])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_query_api_scales_and_shuts_down_gracefully(overlay: str) -> None:
    objs = objects(overlay)
    deployment = find(objs, "Deployment", "query-api")
    c = container(deployment, "query-api")
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= _pre_stop_sleep_s(c) + _uvicorn_grace_s(c, objs) + 5
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = find(objs, "HorizontalPodAutoscaler", "query-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "query-api"
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    if overlay != "overlays/dev":
        assert hpa["spec"]["minReplicas"] >= 3
        assert metrics["Pods"]["pods"]["metric"]["name"] == "docqa_http_requests_per_second"
    pdb = find(objs, "PodDisruptionBudget", "query-api")
    assert pods_selected(pdb["spec"]["selector"], objs) == {"query-api"}
    service = find(objs, "Service", "query-api")
    assert pods_selected(service["spec"]["selector"], objs) == {"query-api"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_indexing_api_replicas_roll_and_can_finish_their_jobs(overlay: str) -> None:
    objs = objects(overlay)
    deployment = find(objs, "Deployment", "indexing-api")
    # workers hold leases, so replicas never take each other's jobs (indexing/jobs.py)
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = find(objs, "PodDisruptionBudget", "indexing-api")
    assert pods_selected(pdb["spec"]["selector"], objs) == {"indexing-api"}
    c = container(deployment, "indexing-api")
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    worker_grace = float(effective_env(c, objs)["DOCQA_SHUTDOWN_GRACE_S"])
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= _pre_stop_sleep_s(c) + _uvicorn_grace_s(c, objs) + worker_grace + 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_vllm_is_found_through_a_headless_service(overlay: str) -> None:
    objs = objects(overlay)
    service = find(objs, "Service", "vllm")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"].get("publishNotReadyAddresses", False) is False
    assert pods_selected(service["spec"]["selector"], objs) == {"vllm"}
    c = container(find(objs, "Deployment", "vllm"), "vllm")
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert pods_selected(find(objs, "PodDisruptionBudget", "vllm")["spec"]["selector"], objs) == {
        "vllm"
    }


@pytest.mark.parametrize("overlay", ["overlays/prod", "overlays/keda"])
def test_prod_runs_one_vllm_pod_per_gpu(overlay: str) -> None:
    objs = objects(overlay)
    deployment = find(objs, "Deployment", "vllm")
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment, "vllm")
    assert str(c["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert str(c["resources"]["requests"].get("nvidia.com/gpu", 1)) == "1"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert pod["nodeSelector"]
    assert "--enable-prefix-caching" in c["args"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    assert arg_value(c["args"], "--model").startswith("/models/")
    if overlay == "overlays/keda":
        assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
        scaled = find(objs, "ScaledObject", "vllm")
        assert "vllm:num_requests_waiting" in scaled["spec"]["triggers"][0]["metadata"]["query"]


def test_dev_vllm_runs_the_cpu_recipe() -> None:
    objs = objects("overlays/dev")
    c = container(find(objs, "Deployment", "vllm"), "vllm")
    expected = vllm_cpu.serve_command(
        Path("/opt/vllm/bin/python"),
        Path("/models/smollm2-135m-instruct"),
        host="0.0.0.0",
        port=int(arg_value(c["args"], "--port")),
    )
    assert [*c["command"], *c["args"]] == expected
    env = effective_env(c, objs)
    recipe_env = vllm_cpu.serve_env(Path("/tmp/.cache"))
    assert env["VLLM_CPU_KVCACHE_SPACE"] == recipe_env["VLLM_CPU_KVCACHE_SPACE"]
    assert not any("gpu" in key for key in c["resources"]["limits"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_llm_settings_point_at_the_vllm_pods(overlay: str) -> None:
    objs = objects(overlay)
    service = find(objs, "Service", "vllm")
    args = container(find(objs, "Deployment", "vllm"), "vllm")["args"]
    _, query = next((o, c) for o, c in docqa_containers(objs) if c["name"] == "query-api")
    env = effective_env(query, objs)
    assert env["DOCQA_LLM_MODEL"] == arg_value(args, "--served-model-name")
    assert int(env["DOCQA_LLM_CONTEXT_WINDOW"]) <= int(arg_value(args, "--max-model-len"))
    ports = {p["port"] for p in service["spec"]["ports"]}
    for endpoint in env["DOCQA_LLM_ENDPOINTS"].split(","):
        url = urlsplit(endpoint)
        assert url.hostname == service["metadata"]["name"] and url.port in ports, endpoint
        assert url.path == "/v1", endpoint


def _allowed_clients(policy: Obj, objs: list[Obj], port: int) -> set[str]:
    """The in-namespace pods a NetworkPolicy lets in on ``port``; "*" for a rule open to all."""
    clients: set[str] = set()
    for rule in policy["spec"].get("ingress", []):
        ports = {p["port"] for p in rule.get("ports", [])}
        if ports and port not in ports:
            continue
        if "from" not in rule:
            clients.add("*")
        for peer in rule.get("from", []):
            if "podSelector" in peer and "namespaceSelector" not in peer:
                clients |= pods_selected(peer["podSelector"], objs)
    return clients


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_only_the_services(overlay: str) -> None:
    objs = objects(overlay)
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    default = find(objs, "NetworkPolicy", "default-deny-ingress")
    assert "ingress" not in default["spec"] and default["spec"]["policyTypes"] == ["Ingress"]
    assert pods_selected(default["spec"]["podSelector"], objs) == {
        pod_template(w)["metadata"]["labels"][NAME_LABEL] for w in workloads(objs)
    }
    for policy in policies:
        open_rules = [r for r in policy["spec"].get("ingress", []) if "from" not in r]
        if open_rules:
            assert pods_selected(policy["spec"]["podSelector"], objs) <= {
                "query-api",
                "indexing-api",
            }, f"{policy['metadata']['name']} is open to all but is not an API"
    assert _allowed_clients(find(objs, "NetworkPolicy", "vllm-ingress"), objs, 8000) == {
        "query-api"
    }
    stores = {"milvus": 19530, "redis": 6379} if overlay == "overlays/dev" else {"milvus": 19530}
    for store, port in stores.items():
        policy = find(objs, "NetworkPolicy", f"{store}-ingress")
        assert _allowed_clients(policy, objs, port) == DATA_STORE_CLIENTS, store


# ----------------------------------------------------------------------------- batch ingestion


def _ingestion_jobs() -> list[tuple[str, Obj]]:
    jobs = [(o, find(objects(o), "CronJob", "docqa-resync")) for o in OVERLAYS]
    return [*jobs, ("jobs/ingest", find(objects("jobs/ingest"), "Job", "docqa-ingest"))]


def _job_spec(obj: Obj) -> Obj:
    return obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]


def _sample_args(args: list[str], env: dict[str, str]) -> list[str]:
    values = {**env, "JOB_COMPLETION_INDEX": "0"}
    return [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], arg) for arg in args]


def test_ingestion_runs_as_indexed_jobs_over_shards() -> None:
    for where, obj in _ingestion_jobs():
        spec = _job_spec(obj)
        c = container(obj, "ingest")
        env = {e["name"]: e for e in c["env"]}
        assert spec["completionMode"] == "Indexed", where
        assert int(env["INGEST_SHARDS"]["value"]) == spec["completions"], where
        assert 1 <= spec["parallelism"] <= spec["completions"], where
        assert (
            "job-completion-index"
            in env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
        ), where
        assert c["args"][:2] == ["ingest", "/data"], where
        assert arg_value(c["args"], "--shard") == "$(JOB_COMPLETION_INDEX)/$(INGEST_SHARDS)"
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/data")
        assert mount["readOnly"] is True, where
        assert pod_template(obj)["spec"]["restartPolicy"] == "Never", where


def test_a_shard_whose_documents_failed_is_not_retried() -> None:
    """`docqa ingest` exits 3 when it ran to its end but some documents failed: a retry would
    fail them again, so the index fails at once; other failures (1: Milvus down) are retried."""
    for where, obj in _ingestion_jobs():
        spec = _job_spec(obj)
        assert spec["backoffLimitPerIndex"] >= 1, where
        rules = spec["podFailurePolicy"]["rules"]
        assert [r["action"] for r in rules] == ["FailIndex"], where
        codes = rules[0]["onExitCodes"]
        assert (codes["containerName"], codes["operator"], codes["values"]) == (
            "ingest",
            "In",
            [cli.EXIT_DOCUMENTS_FAILED],
        ), where


def test_one_off_job_matches_the_cronjob_template() -> None:
    cron = pod_template(find(objects("overlays/dev"), "CronJob", "docqa-resync"))
    job = pod_template(find(objects("jobs/ingest"), "Job", "docqa-ingest"))
    base_cron = pod_template(find(render.render(K8S / "base"), "CronJob", "docqa-resync"))
    for template in (job, base_cron):
        for c in template["spec"]["containers"]:
            c["image"] = "docqa"
            c["env"] = [e for e in c["env"] if e["name"] != "INGEST_SHARDS"]
    assert job == base_cron, "k8s/jobs/ingest/job.yaml drifted from the CronJob in k8s/base"
    assert cron["metadata"] == job["metadata"]


def test_one_off_job_image_is_in_step_with_the_overlays() -> None:
    def tag(kustomization: str) -> str:
        images = [c["image"] for _, c in docqa_containers(objects(kustomization))]
        return render.split_image(images[0])[1]

    assert tag("jobs/ingest") == tag("overlays/dev") == tag("overlays/prod")


# ----------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_docqa_containers_run_real_cli_commands(kustomization: str) -> None:
    objs = objects(kustomization)
    for _, c in docqa_containers(objs):
        args = c["args"]
        env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
        cli.build_parser().parse_args(_sample_args(args, env))


# ----------------------------------------------------------------------------- settings parity


def test_setting_names_are_derived_from_the_models() -> None:
    assert {
        "DOCQA_MILVUS_URI",
        "DOCQA_REDIS_URL",
        "DOCQA_LLM_ENDPOINTS",
        "DOCQA_AUTH_QUERY_KEYS",
        "DOCQA_EMBEDDER_THREADS",
        "DOCQA_GROUNDING_POLICY",
        "DOCQA_CHUNK_MAX_TOKENS",
        "DOCQA_ENVIRONMENT",
    } <= SETTINGS_ENV_NAMES
    assert not {"DOCQA_MILVUS", "DOCQA_MILVUS_URL", "DOCQA_LLM"} & SETTINGS_ENV_NAMES


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_docqa_env_var_is_a_setting(kustomization: str) -> None:
    assert unknown_settings(objects(kustomization)) == {}


def test_parity_check_reports_names_that_are_not_settings() -> None:
    manifests = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "docqa-settings"},
            "data": {"DOCQA_MILVUS_URL": "http://m:19530", "DOCQA_LOG_LEVEL": "info"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "docqa-secrets"},
            "stringData": {"DOCQA_AUTH_QUERY_KEY": "x", "DOCQA_REDIS_URL": "redis://r:6379/0"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "query-api"},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "q",
                                "image": "docqa:1",
                                "env": [
                                    {"name": "DOCQA_LLM_ENDPOINT", "value": "http://v/v1"},
                                    {"name": "DOCQA_LLM_MODEL", "value": "m"},
                                ],
                            }
                        ]
                    }
                }
            },
        },
    ]
    assert unknown_settings(manifests) == {
        "DOCQA_MILVUS_URL": ["ConfigMap/docqa-settings"],
        "DOCQA_AUTH_QUERY_KEY": ["Secret/docqa-secrets"],
        "DOCQA_LLM_ENDPOINT": ["Deployment/query-api"],
    }


def test_parity_check_fails_when_a_setting_is_renamed_in_the_code() -> None:
    # as if settings.py renamed redis.url: the manifests' DOCQA_REDIS_URL must be reported
    renamed = SETTINGS_ENV_NAMES - {"DOCQA_REDIS_URL"}
    for overlay in OVERLAYS:
        assert "DOCQA_REDIS_URL" in unknown_settings(objects(overlay), renamed), overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_production_settings_are_set_for_every_docqa_container(overlay: str) -> None:
    objs = objects(overlay)
    found = list(docqa_containers(objs))
    assert {c["name"] for _, c in found} == {"query-api", "indexing-api", "ingest"}
    for obj, c in found:
        env = effective_env(c, objs)
        required = set(REQUIRED_SETTINGS)
        if settings_class(c) is QuerySettings:
            required |= REQUIRED_QUERY_SETTINGS
        missing = required - set(env)
        assert not missing, f"{obj['metadata']['name']}: {sorted(missing)} not set"
        assert env["DOCQA_ENVIRONMENT"] == "production"


def _clear_docqa_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("DOCQA_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_load_from_each_containers_environment(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = objects(overlay)
    for _, c in docqa_containers(objs):
        env = effective_env(c, objs)
        # the committed examples hold placeholders; an operator puts real keys there
        env["DOCQA_AUTH_QUERY_KEYS"] = secrets.token_hex(24)
        env["DOCQA_AUTH_ADMIN_KEYS"] = secrets.token_hex(24)
        with monkeypatch.context() as patched:
            _clear_docqa_env(patched)
            for name, value in env.items():
                if name.startswith("DOCQA_"):
                    patched.setenv(name, value)
            settings = settings_class(c)()
        assert settings.environment == "production"
        assert settings.embedder.threads == math.ceil(quantity(c["resources"]["limits"]["cpu"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_example_secrets_cannot_go_live(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    objs = objects(overlay)
    _, c = next((o, c) for o, c in docqa_containers(objs) if c["name"] == "query-api")
    env = effective_env(c, objs)
    assert len(env["DOCQA_AUTH_QUERY_KEYS"]) < MIN_PRODUCTION_KEY_LENGTH
    _clear_docqa_env(monkeypatch)
    for name, value in env.items():
        if name.startswith("DOCQA_"):
            monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="DOCQA_AUTH_QUERY_KEYS"):
        QuerySettings()


def test_real_secrets_stay_out_of_git() -> None:
    ignored = (K8S / ".gitignore").read_text().split()
    assert "overlays/*/secrets.env" in ignored
    for overlay in ("overlays/dev", "overlays/prod"):
        assert (K8S / overlay / "secrets.env.example").is_file()


@pytest.mark.parametrize("overlay", ["overlays/prod", "overlays/keda"])
def test_prometheus_adapter_rule_serves_the_hpa_metric(overlay: str) -> None:
    import yaml

    from services.common.metrics import HTTP_REQUESTS

    objs = objects(overlay)
    hpa = find(objs, "HorizontalPodAutoscaler", "query-api")
    wanted = next(
        m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"
    )
    config = yaml.safe_load(
        find(objs, "ConfigMap", "docqa-prometheus-adapter")["data"]["config.yaml"]
    )
    (rule,) = [r for r in config["rules"] if r["name"]["as"] == wanted]
    counter = f"{HTTP_REQUESTS._name}_total"  # prometheus_client drops the suffix from _name
    assert rule["seriesQuery"].startswith(counter + "{")
    assert re.fullmatch(rule["name"]["matches"], counter)
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    query = rule["metricsQuery"]
    assert "rate(<<.Series>>{<<.LabelMatchers>>" in query and 'service="query"' in query
    assert "/healthz|/readyz|/metrics" in query, "probes and scrapes are not request traffic"


# ----------------------------------------------------------------------------- admin port


SERVING_CONTAINERS = {"query-api", "indexing-api"}


def _admin_policy_sources(policies: list[Obj], pod: str, port: int, objs: list[Obj]) -> list[Obj]:
    """The ``from`` peers of every rule that admits ``port`` to ``pod``; an open rule (no
    ``from``) counts as the peer ``{}`` (everyone)."""
    peers: list[Obj] = []
    for policy in policies:
        if pod not in pods_selected(policy["spec"]["podSelector"], objs):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if ports and port not in ports:
                continue
            peers.extend(rule.get("from", [{}]))
    return peers


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_and_readiness_detail_are_on_the_admin_port(overlay: str) -> None:
    objs = objects(overlay)
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    served = {c["name"]: (obj, c) for obj, c in docqa_containers(objs)}
    assert set(served) >= SERVING_CONTAINERS
    for name in SERVING_CONTAINERS:
        obj, c = served[name]
        settings_port = int(effective_env(c, objs)["DOCQA_SERVER_ADMIN_PORT"])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["admin"] == settings_port != ports["http"], name
        annotations = pod_template(obj)["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(settings_port), name
        assert annotations["prometheus.io/path"] == "/metrics", name
        # only Prometheus' namespace reaches the admin port, and no Service exposes it
        peers = _admin_policy_sources(policies, name, settings_port, objs)
        assert peers, f"{name}: nothing may scrape the admin port"
        for peer in peers:
            namespace = peer.get("namespaceSelector", {}).get("matchLabels", {})
            assert namespace == {"kubernetes.io/metadata.name": "monitoring"}, (name, peer)
        for service in (o for o in objs if o["kind"] == "Service"):
            for port in service["spec"]["ports"]:
                assert port["targetPort"] not in ("admin", settings_port), service["metadata"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_public_port_stays_open_for_clients(overlay: str) -> None:
    objs = objects(overlay)
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    for name, port in (("query-api", 8000), ("indexing-api", 8001)):
        assert {} in _admin_policy_sources(policies, name, port, objs), name
