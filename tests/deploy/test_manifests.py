"""Static checks of docker-compose.yml, the kustomize overlays and the Prometheus configs.

No cluster runs here: the manifests are validated against their published schemas
(compose-spec, the Kubernetes OpenAPI schemas shipped in kubernetes-validate), built with
`kubectl kustomize`, and cross-checked against the code (entry points, settings keys) and
against the rule that no disk is shared: every piece of state lives in a server made for it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
OVERLAYS = ("dev", "production")
KUBERNETES_VERSION = "1.31.0"
# Read by a probe or a library rather than by a settings class: boto3's own variables (the
# drift reports' object store), MLflow's.
LIBRARY_KEYS = {
    "PROBE_URL",
    "MLFLOW_DISABLE_TELEMETRY",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
}


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _kustomize(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to build the kustomize overlays: install kubectl")
    out = subprocess.run(
        [
            kubectl,
            "kustomize",
            "--load-restrictor",
            "LoadRestrictionsNone",
            str(ROOT / "deploy/k8s/overlays" / overlay),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _settings_keys() -> set[str]:
    """Every env var a settings class of the project reads (upper-case field names)."""
    import features.config as featurestore
    from modstack.deadletter_store import DeadLetterSettings
    from modstack.message_log import MessageLogSettings
    from modstack.settings import CommonSettings
    from services.canary.settings import CanarySettings
    from services.ingestion.settings import IngestionSettings
    from services.monitoring.reports import ReportStorageSettings
    from services.monitoring.settings import MonitoringSettings
    from services.processor.settings import ProcessorSettings
    from services.review.settings import ReviewSettings
    from services.serving.settings import ServingSettings

    classes = (
        CommonSettings,
        IngestionSettings,
        ProcessorSettings,
        ServingSettings,
        MonitoringSettings,
        CanarySettings,
        ReviewSettings,
        featurestore.FeatureStoreSettings,
        MessageLogSettings,
        DeadLetterSettings,
        ReportStorageSettings,
    )
    return {name.upper() for cls in classes for name in cls.model_fields}


def _entry_module(command: list[str]) -> str | None:
    if len(command) >= 3 and command[:2] == ["python", "-m"]:
        return command[2]
    return None


def _module_exists(module: str) -> bool:
    path = ROOT / Path(*module.split("."))
    return (path / "__main__.py").exists() or path.with_suffix(".py").exists()


def test_compose_file_matches_the_compose_spec_schema() -> None:
    validator = Draft7Validator(get_builtin_schema("vendor.compose-spec"))
    errors = sorted(validator.iter_errors(_compose()), key=str)
    assert not errors, "\n".join(e.message for e in errors)


def test_compose_services_run_modules_that_exist() -> None:
    for name, service in _compose()["services"].items():
        module = _entry_module(service.get("command", []))
        if module:
            assert _module_exists(module), f"compose service {name} runs missing {module}"


def test_compose_bind_mounts_exist() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_compose_app_environment_keys_are_settings_fields() -> None:
    env = _compose()["x-app"]["environment"]
    unknown = sorted(set(env) - _settings_keys() - LIBRARY_KEYS)
    assert not unknown, f"compose sets keys no settings class reads: {unknown}"


def _mounted_named_volumes(service: dict[str, Any], named: set[str]) -> set[str]:
    sources = set()
    for volume in service.get("volumes", []):
        source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
        if source in named:
            sources.add(source)
    return sources


def test_compose_shares_no_named_volume_between_services() -> None:
    compose = _compose()
    named = set(compose.get("volumes") or {})
    users: dict[str, list[str]] = {}
    for name, service in compose["services"].items():
        for volume in _mounted_named_volumes(service, named):
            users.setdefault(volume, []).append(name)
    shared = {volume: names for volume, names in users.items() if len(names) > 1}
    assert not shared, f"named volumes mounted by more than one service: {shared}"
    assert set(users) == named, f"declared but unused volumes: {named - set(users)}"


def test_compose_services_of_the_image_keep_no_volume_only_a_tmpfs_cache() -> None:
    compose = _compose()
    app = compose["x-app"]
    assert "volumes" not in app and "/data" in app["tmpfs"]
    assert app["environment"]["DATA_DIR"] == "/data"
    for name, service in compose["services"].items():
        if service.get("image") == app["image"]:
            assert not service.get("volumes"), f"{name} mounts a volume"


def test_compose_state_lives_in_servers() -> None:
    compose = _compose()
    env = compose["x-app"]["environment"]
    assert (env["FEAST_REGISTRY_TYPE"], env["FEAST_OFFLINE_STORE_TYPE"]) == ("sql", "postgres")
    assert env["FEAST_REGISTRY_PATH"].startswith("postgresql+psycopg://")
    assert env["MESSAGE_LOG_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["DEADLETTER_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["MONITORING_REPORTS_S3_URL"].startswith("s3://")
    mlflow = compose["services"]["mlflow"]
    assert "--artifacts-destination=s3://mlflow/" in mlflow["command"]
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    buckets = " ".join(compose["services"]["minio-buckets"]["entrypoint"])
    assert "store/mlflow" in buckets and "store/reports" in buckets
    assert compose["services"]["minio"]["image"].startswith("minio/minio:")
    assert "postgresql" in compose["services"]["review"]["environment"]["REVIEW_DATABASE_URL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_overlay_builds_and_validates_strictly(overlay: str) -> None:
    import kubernetes_validate

    docs = _kustomize(overlay)
    assert docs, f"overlay {overlay} produced no resources"
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_claim_is_read_write_many(overlay: str) -> None:
    for doc in _kustomize(overlay):
        claims = [doc["spec"]] if doc["kind"] == "PersistentVolumeClaim" else []
        if doc["kind"] == "StatefulSet":
            claims += [t["spec"] for t in doc["spec"].get("volumeClaimTemplates", [])]
        for claim in claims:
            assert claim["accessModes"] == ["ReadWriteOnce"], doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployments_and_jobs_keep_only_an_empty_dir_cache(overlay: str) -> None:
    for doc in _kustomize(overlay):
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for volume in doc["spec"]["template"]["spec"].get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= {"emptyDir", "configMap", "secret"}, (doc["metadata"]["name"], volume)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_config_and_store_secret_keys_are_settings_fields(overlay: str) -> None:
    for doc in _kustomize(overlay):
        generated = doc["kind"] == "Secret" and doc["metadata"]["name"].startswith(
            "modstack-stores"
        )
        if (
            doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("modstack-config")
        ) or generated:
            unknown = sorted(set(doc["data"]) - _settings_keys() - LIBRARY_KEYS)
            assert not unknown, f"{doc['metadata']['name']} sets keys nothing reads: {unknown}"


def test_k8s_state_lives_in_servers() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _kustomize("dev")}
    config = next(d for (kind, name), d in docs.items() if name.startswith("modstack-config"))
    assert (config["data"]["FEAST_REGISTRY_TYPE"], config["data"]["FEAST_OFFLINE_STORE_TYPE"]) == (
        "sql",
        "postgres",
    )
    assert config["data"]["MONITORING_REPORTS_S3_URL"].startswith("s3://")
    stores = next(d for (kind, name), d in docs.items() if name.startswith("modstack-stores"))
    assert {"FEAST_REGISTRY_PATH", "MESSAGE_LOG_DATABASE_URL", "DEADLETTER_DATABASE_URL"} <= set(
        stores["data"]
    )
    mlflow = docs[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
    assert "--artifacts-destination s3://mlflow/" in " ".join(mlflow["args"])
    assert ("StatefulSet", "minio") in docs and ("Job", "minio-buckets") in docs
    assert ("Job", "postgres-databases") in docs
    for name in ("processor", "serving", "ingestion", "monitoring"):
        container = docs[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        sources = [next(iter(source.values()))["name"] for source in container["envFrom"]]
        assert any(s.startswith("modstack-stores") for s in sources), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_limits_and_runs_locked_down(overlay: str) -> None:
    for doc in _kustomize(overlay):
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        name = doc["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            assert "readinessProbe" in container and "livenessProbe" in container, name
            assert {"requests", "limits"} <= set(container["resources"]), name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_services_run_modules_that_exist(overlay: str) -> None:
    for doc in _kustomize(overlay):
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            module = _entry_module(container.get("command", []))
            if module:
                assert _module_exists(module), f"{doc['metadata']['name']} runs missing {module}"


def test_k8s_and_compose_run_the_same_services() -> None:
    compose_modules = {
        m for s in _compose()["services"].values() if (m := _entry_module(s.get("command", [])))
    }
    k8s_modules = {
        m
        for doc in _kustomize("dev")
        if doc["kind"] == "Deployment"
        for c in doc["spec"]["template"]["spec"]["containers"]
        if (m := _entry_module(c.get("command", [])))
    }
    assert {m for m in compose_modules if m.startswith("services.")} == k8s_modules


@pytest.mark.parametrize(
    "config", ["deploy/prometheus/prometheus.yml", "deploy/prometheus/compose/prometheus.yml"]
)
def test_prometheus_configs_pass_promtool(config: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: `make setup` installs Debian's prometheus package")
    result = subprocess.run(
        [promtool, "check", "config", str(ROOT / config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_env_example_lists_exactly_the_settings_the_code_reads() -> None:
    fields = _settings_keys()
    lines = (ROOT / ".env.example").read_text().splitlines()
    # `KEY=value`, or `# KEY=` for a setting whose default is "unset"
    keys = {m[1] for line in lines if (m := re.match(r"^(?:# )?([A-Z][A-Z0-9_]*)=", line))}
    assert keys == fields, f"only in .env.example: {keys - fields}; missing: {fields - keys}"
