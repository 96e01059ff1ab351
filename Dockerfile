# The code location image: Dagster's daemon and webserver (or a Kubernetes run launcher)
# load `meter_assets.definitions` from a code server running in this image.
FROM python:3.11-slim

WORKDIR /opt/meter-platform
# LightGBM (the load forecast) needs the GNU OpenMP runtime
RUN apt-get update -q && apt-get install -y -q --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
COPY requirements.lock pyproject.toml ./
RUN pip install --no-cache-dir -r requirements.lock
COPY meter_assets ./meter_assets
COPY workspace.yaml dagster.yaml ./
RUN pip install --no-cache-dir --no-deps .

ENV METER_DATA_DIR=/var/lib/meter-platform \
    METER_LAKE=/var/lib/meter-platform/lake \
    METER_MARKET_TZ=Europe/London

EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "meter_assets.definitions"]
