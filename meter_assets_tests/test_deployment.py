"""The deployments on paper, checked: the Helm values for Dagster's official chart render (as the
chart renders them) to instance settings that Dagster's own schema and dagster-k8s accept, every
job's pod is a valid Kubernetes Job built by dagster-k8s, and the single-host compose file wires
the image, the database and the settings together."""

import json
import os
import re

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import construct_dagster_k8s_job
from dagster_postgres.utils import pg_url_from_config
from kubernetes.utils import parse_quantity

from meter_assets.definitions import build
from meter_assets.jobs import POD_TAG

from .daemon_support import REPO

VALUES = os.path.join(REPO, "deploy", "helm", "values.yaml")
COMPOSE = os.path.join(REPO, "deploy", "compose.yaml")
RELEASE, NAMESPACE = "meter", "meter"
IMAGE = "registry.internal/meter-platform:test"

# the chart's k8sRunLauncher values and the K8sRunLauncher settings it writes for each
LAUNCHER_KEYS = {
    "imagePullPolicy": "image_pull_policy",
    "loadInclusterConfig": "load_incluster_config",
    "kubeconfigFile": "kubeconfig_file",
    "jobNamespace": "job_namespace",
    "envConfigMaps": "env_config_maps",
    "envSecrets": "env_secrets",
    "envVars": "env_vars",
    "volumeMounts": "volume_mounts",
    "volumes": "volumes",
    "labels": "labels",
    "resources": "resources",
    "failPodOnRunFailure": "fail_pod_on_run_failure",
    "schedulerName": "scheduler_name",
    "securityContext": "security_context",
    "runK8sConfig": "run_k8s_config",
}
RUN_K8S_KEYS = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}
MONITORING_KEYS = {
    "enabled": "enabled",
    "startTimeoutSeconds": "start_timeout_seconds",
    "pollIntervalSeconds": "poll_interval_seconds",
    "maxResumeRunAttempts": "max_resume_run_attempts",
    "freeSlotsAfterRunEndSeconds": "free_slots_after_run_end_seconds",
}
RETRIES_KEYS = {
    "enabled": "enabled",
    "maxRetries": "max_retries",
    "retryOnAssetOrOpFailure": "retry_on_asset_or_op_failure",
}


def _renamed(values: dict, keys: dict[str, str], where: str) -> dict:
    unknown = set(values) - set(keys)
    assert not unknown, f"{where}: the chart has no {sorted(unknown)}"
    return {keys[k]: v for k, v in values.items()}


def _instance_settings(values: dict) -> dict:
    """dagster.yaml as the chart writes it from these values (its instance ConfigMap)."""
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    k8s = _renamed(launcher["config"]["k8sRunLauncher"], LAUNCHER_KEYS, "runLauncher.config.k8sRunLauncher")
    for names in ("env_config_maps", "env_secrets"):
        k8s[names] = [source["name"] for source in k8s.get(names, [])]
    if "run_k8s_config" in k8s:
        k8s["run_k8s_config"] = _renamed(k8s["run_k8s_config"], RUN_K8S_KEYS, "runK8sConfig")
    k8s.setdefault("job_namespace", NAMESPACE)
    k8s.update(
        service_account_name=values["global"]["serviceAccountName"],
        dagster_home=values["global"]["dagsterHome"],
        instance_config_map=f"{RELEASE}-dagster-instance",
        postgres_password_secret=values["global"]["postgresqlSecretName"],
    )
    pg = values["postgresql"]
    daemon = values["dagsterDaemon"]
    concurrency = values["concurrency"]
    return {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "username": pg["postgresqlUsername"],
                    "password": {"env": "DAGSTER_PG_PASSWORD"},
                    "hostname": pg["postgresqlHost"],
                    "db_name": pg["postgresqlDatabase"],
                    "port": pg["service"]["port"],
                    "params": pg.get("postgresqlParams", {}),
                    "scheme": pg.get("postgresqlScheme", "postgresql"),
                }
            }
        },
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": k8s},
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": daemon["runCoordinator"]["type"],
            "config": {},
        },
        "concurrency": {
            "pools": {"default_limit": concurrency["pools"]["defaultLimit"]},
            "runs": {
                "max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"],
                "tag_concurrency_limits": concurrency["runs"]["tagConcurrencyLimits"],
            },
        },
        "run_monitoring": _renamed(daemon["runMonitoring"], MONITORING_KEYS, "dagsterDaemon.runMonitoring"),
        "run_retries": _renamed(daemon["runRetries"], RETRIES_KEYS, "dagsterDaemon.runRetries"),
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }


@pytest.fixture(scope="module")
def values() -> dict:
    with open(VALUES) as f:
        return yaml.safe_load(f)


@pytest.fixture
def launcher(values, tmp_path) -> K8sRunLauncher:
    """The chart's run launcher, checked against dagster-k8s's schema; out of a cluster, it reads
    an empty kubeconfig instead (nothing here talks to a cluster)."""
    config = _instance_settings(values)["run_launcher"]["config"]
    checked = process_config(K8sRunLauncher.config_type(), config)
    assert checked.success, [e.message for e in checked.errors]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    outside = {**checked.value, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    return K8sRunLauncher.from_config_value(None, outside)


def test_the_chart_values_make_instance_settings_dagster_accepts(values, tmp_path):
    settings = _instance_settings(values)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    # Dagster's instance schema, as the daemon and the webserver load it
    loaded, _ = dagster_instance_config(str(tmp_path), "dagster.yaml")
    assert loaded["run_retries"]["retry_on_asset_or_op_failure"] is False
    assert loaded["run_monitoring"]["enabled"] is True
    # the storage settings dagster-postgres takes, through psycopg2 (SQLAlchemy 2.1 would pick psycopg 3)
    storage = settings["storage"]["postgres"]
    from dagster._core.storage.config import pg_config

    checked = process_config(pg_config(), {**storage, "postgres_db": {**storage["postgres_db"], "password": "pw"}})
    assert checked.success, [e.message for e in checked.errors]
    url = pg_url_from_config(checked.value)
    assert url.startswith("postgresql+psycopg2://meter_dagster:pw@postgres.meter.svc.cluster.local:5432/dagster")


def test_a_typo_in_the_values_is_refused(values):
    bad = json.loads(json.dumps(values))
    bad["runLauncher"]["config"]["k8sRunLauncher"]["envSecret"] = [{"name": "x"}]
    with pytest.raises(AssertionError, match="the chart has no"):
        _instance_settings(bad)
    wrong_type = _instance_settings(values)["run_launcher"]["config"] | {"fail_pod_on_run_failure": "yes"}
    assert not process_config(K8sRunLauncher.config_type(), wrong_type).success


def test_every_job_runs_in_a_pod_sized_for_it(launcher):
    jobs = [job for job in build().resolve_all_job_defs() if not job.name.startswith("__")]
    unsized = [job.name for job in jobs if POD_TAG not in job.tags]
    assert unsized == [], f"jobs without a pod size: {unsized}"
    sizes = {}
    for job in jobs:
        run = dg.DagsterRun(job_name=job.name, run_id="0" * 32, tags=dict(job.tags))
        context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=True)
        k8s_job = construct_dagster_k8s_job(
            job_config=context.get_k8s_job_config(job_image=IMAGE, run_launcher=launcher),
            args=["dagster", "api", "execute_run"],
            job_name=f"dagster-run-{job.name.replace('_', '-')}",
            user_defined_k8s_config=context.run_k8s_config,
            component="run_worker",
        )
        pod = k8s_job.spec.template.spec
        (container,) = pod.containers
        assert container.image == IMAGE
        assert container.security_context.run_as_non_root is True
        assert {e.secret_ref.name for e in container.env_from if e.secret_ref} == {"meter-platform-env"}
        assert "scratch" in {v.name for v in pod.volumes}
        assert k8s_job.metadata.namespace == NAMESPACE or k8s_job.metadata.namespace is None
        requests, limits = container.resources.requests, container.resources.limits
        assert parse_quantity(requests["memory"]) <= parse_quantity(limits["memory"])
        sizes[job.name] = (requests["cpu"], requests["memory"])
    # a day's rebuild and a month's bills get the two cores and the memory they were measured at
    assert sizes["daily_readings_job"] == ("2", "4Gi") and sizes["issue_bills_job"] == ("2", "4Gi")


def test_the_single_host_compose_file_wires_the_platform_together():
    with open(COMPOSE) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    assert set(services) >= {"postgres", "setup", "code-server", "webserver", "daemon", "api"}
    platform = {name: s for name, s in services.items() if name != "postgres"}
    with open(os.path.join(REPO, "Dockerfile")) as f:
        dockerfile = f.read()
    for name, service in platform.items():
        assert service["image"] == "${METER_IMAGE:-localhost/meter-platform:latest}", name
        env = service.get("environment", {})
        assert all(not str(v).startswith(("postgresql://", "host=")) or "${" in str(v) for v in env.values()), (
            f"{name}: a password written into the file"
        )
    # Dagster's processes share one instance (PostgreSQL, from METER_DAGSTER_PG_URL)
    for name in ("code-server", "webserver", "daemon"):
        assert "METER_DAGSTER_PG_URL" in platform[name]["environment"], name
    # the webserver and the daemon reach the code server the image starts
    port = int(re.search(r'"-p", "(\d+)"', dockerfile).group(1))
    workspace = yaml.safe_load(compose["configs"]["workspace"]["content"])
    (server,) = [entry["grpc_server"] for entry in workspace["load_from"]]
    assert (server["host"], server["port"]) == ("code-server", port)
    # the daemon's run monitoring sees the processes the code server starts for runs
    assert platform["daemon"]["pid"] == "service:code-server"
    for name, service in platform.items():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"], f"{name}: undeclared volume {volume}"
        for config in service.get("configs", []):
            assert config["source"] in compose["configs"], name
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} waits for a service that does not exist: {needed}"
