# syntax=docker/dockerfile:1.7
# One image per Sophia service: `--build-arg SERVICE=comms-mcp` picks which (the code is the same wheel; the
# service name is the entrypoint's argument). Built by `sophia stage build-cache` with docker buildx (multi-arch,
# pushed) or buildah (local); see docs/images.md.
#
# BASE is pinned by digest. A machine without registry access passes a locally made base instead
# (`tools/images/local-base.sh` makes `localhost/sophia-base:bookworm` from Debian's packages): any Debian-like
# image with python3 (3.11+) and its venv module.
ARG BASE=docker.io/library/python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY docker/requirements.txt /src/docker/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install -r /src/docker/requirements.txt
COPY pyproject.toml README.md /src/
COPY src /src/src
# The project's own wheel without its engine-only dependencies; byte-compiled now because the root is read-only later.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install --no-deps /src
RUN /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/python -m pip uninstall -y -q pip

FROM ${BASE} AS runtime
# What all twelve images share comes first, so it is built once; what names the service and release comes last.
# A fixed numeric non-root user, so `runAsNonRoot` can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 sophia \
    && useradd --system --uid 10001 --gid sophia --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sophia
COPY --from=build /opt/venv /opt/venv
# Nothing is written at run time but to /tmp (mount an emptyDir there with readOnlyRootFilesystem).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SOPHIA_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['SOPHIA_PORT'], timeout=5)"]
ENTRYPOINT ["sh", "-c", "exec python3 -m sophia.services --service \"$SOPHIA_SERVICE\" --host 0.0.0.0 --port \"$SOPHIA_PORT\" \"$@\"", "sophia"]
ARG SERVICE
ARG VERSION=v0.0.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/sophia-ai/sophia-release
ARG CREATED=1970-01-01T00:00:00Z
# A RUN that reads the arguments makes them part of the layer cache's key: buildah (1.28) reuses a cached LABEL or
# ENV step whose text is unchanged even when the argument values differ, so without it one service's image could
# carry another's name or version.
RUN printf 'service=%s\nversion=%s\nrevision=%s\n' "$SERVICE" "$VERSION" "$REVISION" > /etc/sophia-image
LABEL org.opencontainers.image.title="sophia-${SERVICE}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT"
ENV SOPHIA_SERVICE=${SERVICE} \
    SOPHIA_VERSION=${VERSION} \
    SOPHIA_GIT_SHA=${REVISION}
USER 10001:10001
