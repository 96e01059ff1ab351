# The platform's image. Its default command serves the code location (`meter_assets.definitions`)
# over gRPC: Dagster's webserver and daemon load it from there, and runs (a Kubernetes run
# launcher's pods among them) start in this image. `meter-api serve` runs the usage API and page
# from the same image, and `meter-db setup` sets up another PostgreSQL.
#
# BASE: any Debian-like image with Python 3.11 and its venv module, the GNU OpenMP runtime
# (LightGBM) and CA certificates. By default the public Python image; `deploy/image.sh` builds one from
# Debian's packages (mmdebstrap), for machines that reach no image registry.
ARG BASE=python:3.11-slim
# DEPENDENCIES: the image the platform is installed on; by default the stage below. `deploy/image.sh`
# builds that stage once per lock file, tags it, and names it here, so a change to the code
# reinstalls none of the dependencies.
ARG DEPENDENCIES=dependencies

# The runtime dependencies, from the lock file alone.
FROM ${BASE} AS dependencies
USER root
RUN if ! ldconfig -p | grep -q libgomp.so.1; then \
        apt-get update -q && apt-get install -y -q --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/venv \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/meter-platform --create-home meter
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
WORKDIR /opt/meter-platform
COPY requirements.lock ./
# Behind a TLS-inspecting proxy, mount its CA bundle at /run/host-ca.crt for the build (deploy/image.sh does).
RUN if [ -f /run/host-ca.crt ]; then export PIP_CERT=/run/host-ca.crt; fi \
 && pip install --no-cache-dir --disable-pip-version-check -r requirements.lock

# The platform on top.
FROM ${DEPENDENCIES}
COPY pyproject.toml workspace.yaml dagster.yaml ./
COPY meter_assets ./meter_assets
# (building the package needs setuptools from the index: the same CA bundle)
RUN if [ -f /run/host-ca.crt ]; then export PIP_CERT=/run/host-ca.crt; fi \
 && pip install --no-cache-dir --disable-pip-version-check --no-deps . \
 && python -c "import meter_assets.definitions"

# Everything the platform writes when it runs on one host (the embedded PostgreSQL, a local lake,
# spill files) is under the data folder; a deployment mounts a volume there or points METER_LAKE
# at S3 and the METER_PG_* variables at its PostgreSQL.
USER 10001:10001
ENV METER_DATA_DIR=/var/lib/meter-platform \
    METER_LAKE=/var/lib/meter-platform/lake \
    METER_MARKET_TZ=Europe/London

# 4000: the code server (gRPC); 8000: the usage API when started with `meter-api serve --host 0.0.0.0`
EXPOSE 4000 8000
HEALTHCHECK CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "meter_assets.definitions"]
