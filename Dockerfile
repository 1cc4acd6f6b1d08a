# The operator image: `python -m kubetune_operator` (kopf, aiohttp, prometheus_client; no ML stack).
#   docker build -t ghcr.io/kubetune/operator:0.1.0 .
# The Helm chart runs it (charts/kubetune); its UID below is the chart's runAsUser.

# Pinned by exact tag: the same Python on every rebuild.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/kubetune_operator ./operator/kubetune_operator
# The operator renders trainer pods from the shared contract (kubetune_trainer.contract).
COPY trainer_image/kubetune_trainer ./trainer_image/kubetune_trainer
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[operator]"

FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels "kubetune[operator]" \
    && rm -rf /wheels
# A numeric, non-root user: Kubernetes' runAsNonRoot can only verify a numeric USER.
USER 10001:10001
EXPOSE 8080 9443
ENTRYPOINT ["python", "-m", "kubetune_operator"]
