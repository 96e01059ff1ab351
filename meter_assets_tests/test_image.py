"""The container image, built as a deployment builds it (`deploy/image.sh`: the Dockerfile under
Debian's buildah, on a base made from Debian's packages by mmdebstrap) and started from its
own configuration: the code server answers Dagster's gRPC health check with the code location
loaded, the usage API answers `/healthz`, and neither runs as root."""

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request

import pytest

from .daemon_support import REPO, wait_for

TOOLS = ("buildah", "mmdebstrap")
IMAGE = "localhost/meter-platform:test"
API_PORT = 8765


def _as_root() -> list[str] | None:
    """How to run a command as root here: directly, through sudo without a password, or not at all."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n", "--preserve-env=BUILDAH_ROOT"]
    return None


AS_ROOT = _as_root()
pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in TOOLS) or AS_ROOT is None,
    reason="building the image needs Debian's buildah and mmdebstrap, and root (.ci/run installs them)",
)


class Buildah:
    def __init__(self, root):
        self.base = [
            *AS_ROOT,
            "buildah",
            "--storage-driver",
            "vfs",
            "--root",
            f"{root}/storage",
            "--runroot",
            f"{root}/run",
        ]

    def __call__(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"buildah {' '.join(args)}: {done.stderr[-3000:]}"
        return done.stdout.strip()

    def start(self, container: str, *command: str, log) -> subprocess.Popen:
        """`command` in `container`, in the background, in a process group of its own."""
        return subprocess.Popen(
            [*self.base, "run", "--isolation", "chroot", container, "--", *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    # `make test-image` keeps buildah's storage between runs (the base and the dependency layer)
    root = os.environ.get("BUILDAH_ROOT") or str(tmp_path_factory.mktemp("buildah"))
    built = subprocess.run(
        [*AS_ROOT, os.path.join(REPO, "deploy", "image.sh"), IMAGE],
        env={**os.environ, "BUILDAH_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-4000:]
    buildah = Buildah(root)
    yield buildah
    buildah("rm", "--all")
    if not os.environ.get("BUILDAH_ROOT"):
        subprocess.run([*AS_ROOT, "rm", "-rf", str(root)], check=False)


def _config(buildah: Buildah) -> dict:
    return json.loads(buildah("inspect", "--type", "image", IMAGE))["Docker"]["config"]


def test_the_image_runs_as_a_user_that_is_not_root_without_the_test_tools(image):
    config = _config(image)
    assert config["User"] == "10001:10001"
    container = image("from", IMAGE)
    assert image("run", "--isolation", "chroot", container, "--", "id", "-u") == "10001"
    # the runtime lock file only: the test tools stay out of the image
    listed = image("run", "--isolation", "chroot", container, "--", "pip", "list", "--format", "json")
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert {"dagster", "dagster-postgres", "dagster-k8s", "meter-assets", "duckdb", "lightgbm"} <= installed
    assert not installed & {"pytest", "moto", "selenium", "hypothesis", "schemathesis", "ruff"}


def test_the_code_server_answers_dagsters_health_check_with_the_code_location_loaded(image, tmp_path):
    from dagster._grpc.client import DagsterGrpcClient

    config = _config(image)
    command = config["Cmd"]
    assert command[:3] == ["dagster", "code-server", "start"] and "meter_assets.definitions" in command
    port = int(command[command.index("-p") + 1])
    container = image("from", IMAGE)
    with open(tmp_path / "code-server.log", "w") as log:
        server = image.start(container, *command, log=log)
        try:
            dagster = os.path.join(os.path.dirname(sys.executable), "dagster")

            def healthy() -> bool:
                check = [dagster, "api", "grpc-health-check", "-p", str(port)]
                return subprocess.run(check, capture_output=True, timeout=30).returncode == 0

            wait_for(healthy, 300, "the code server's gRPC health check")
            # the image's own HEALTHCHECK, run inside a second container of the image
            probe = config["Healthcheck"]["Test"]
            assert probe[0] in ("CMD", "CMD-SHELL")
            other = image("from", IMAGE)
            image("run", "--isolation", "chroot", other, "--", *probe[1:])
            repositories = DagsterGrpcClient(port=port, host="127.0.0.1").list_repositories()
            assert "meter_assets.definitions" in repositories and "SerializableErrorInfo" not in repositories
        finally:
            _stop(server)
    assert "Started Dagster code server" in (tmp_path / "code-server.log").read_text()


def test_the_usage_api_answers_healthz_from_the_image(image, tmp_path):
    container = image("from", IMAGE)
    with open(tmp_path / "api.log", "w") as log:
        api = image.start(
            container, "meter-api", "serve", "--host", "127.0.0.1", "--port", str(API_PORT), "--workers", "1", log=log
        )
        try:

            def answer():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{API_PORT}/healthz", timeout=5) as response:
                        return response.status, json.loads(response.read())
                except OSError:
                    return None

            # the embedded PostgreSQL starts in the container's data folder, as the image's user
            status, body = wait_for(answer, 300, "the API's /healthz")
        finally:
            _stop(api)
    assert (status, body) == (200, {"status": "ok", "newest_day": None}), (tmp_path / "api.log").read_text()[-3000:]
