# syntax=docker/dockerfile:1
# The fedcompute operator: `fedcompute run` as an unprivileged user, and nothing else.
#
#   docker build -t fedcompute:dev .
#
# Two stages: `build` turns the source into a wheel and installs it, with wheels of its
# dependencies only (no compiler is needed or present), into a virtual environment; the
# final image copies that environment onto the same slim base. Pin a digest as well
# (python:3.11.13-slim-bookworm@sha256:...) when building releases.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/fedcompute \
 && python -m pip --python /opt/fedcompute/bin/python install --only-binary=:all: /wheels/*.whl \
 && /opt/fedcompute/bin/fedcompute --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="fedcompute" \
      org.opencontainers.image.description="Kubernetes operator that pools compute providers into federated virtual nodes and reports capacity" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/fedcompute /opt/fedcompute
# The root filesystem is mounted read-only in the chart: no bytecode is written at run time
# (the build stage compiled it), and logs go straight to stdout.
ENV PATH=/opt/fedcompute/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532: the conventional "nonroot" user; the chart runs the pod as the same IDs.
USER 65532:65532
# Liveness (/healthz) and Prometheus metrics (/metrics), as the chart passes them.
EXPOSE 8080 9090
ENTRYPOINT ["fedcompute", "run"]
