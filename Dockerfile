# syntax=docker/dockerfile:1
# The b2ckeys operator image:
#
#   docker build -t ghcr.io/b2ckeys/b2ckeys:0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# builder: a virtual environment from the hashed lock (every wheel checked against
#   requirements.lock), the package itself without dependencies, then whatever the package does
#   not need at run time (the lock's development tools) removed again.
# runtime: the same base image (the venv's interpreter links point into it), the venv, bytecode
#   for what the operator loads, and a numeric non-root user. Nothing is written at run time,
#   so the root filesystem can be read-only; deploy/base mounts an emptyDir at /tmp for anything
#   a library insists on writing.
# tests/unit/test_dockerfile.py checks these properties statically.

# Both stages must use one image: the venv's python is a link to the base image's interpreter.
# Pin a digest (python:3.11-slim@sha256:...) where builds must be bit-for-bit repeatable.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/b2ckeys
WORKDIR /src
# The lock alone first, so this slow layer is rebuilt only when a dependency changes. Wheels
# only (no compiler in a slim image, and no sdist build scripts running in the build); no
# bytecode yet, since most of what the lock installs is removed again below.
COPY requirements.lock ./
RUN /opt/b2ckeys/bin/pip install --require-hashes --only-binary=:all: --no-compile \
        -r requirements.lock
COPY pyproject.toml README.md ./
# Only the operator's package: b2ckeys_emulators (the fake Graph, token issuer and API server that
# tests and `make demo` use) never enters the image, so setuptools finds nothing else to install.
COPY operator/b2ckeys/ operator/b2ckeys/
COPY scripts/prune_to_runtime.py scripts/compile_imported.py scripts/
# --no-deps: the lock already installed them, hash-checked. --no-build-isolation: build with the
# lock's setuptools instead of fetching an unpinned one.
RUN /opt/b2ckeys/bin/pip install --no-deps --no-build-isolation --no-compile . \
    && /opt/b2ckeys/bin/python scripts/prune_to_runtime.py b2ckeys \
    && /opt/b2ckeys/bin/pip check \
    && /opt/b2ckeys/bin/python -m pip uninstall --yes --quiet pip \
    && /opt/b2ckeys/bin/b2ckeys run --help > /dev/null

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="b2ckeys" \
      org.opencontainers.image.description="Kubernetes operator that keeps Azure AD B2C IEF policy keys in sync with cluster Secrets" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/b2ckeys/b2ckeys" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# A passwd entry for the numeric user: Kopf names its peering identity after getpass.getuser(),
# which raises for a uid the passwd file does not know (unless POD_ID is set, as the Deployment
# does). Home is /tmp, the one writable place.
RUN groupadd --system --gid 65532 b2ckeys \
    && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin b2ckeys
COPY --from=builder /opt/b2ckeys /opt/b2ckeys
# Bytecode for what the operator loads (its modules and the standard library's, whose .pyc files
# the python image deletes), so a read-only root filesystem does not mean compiling ~1,100
# modules in memory at every start (~1 s). Written here, not in the builder: the standard library
# lives in this stage's base image. The script is mounted, not copied, so it stays out.
RUN --mount=type=bind,from=builder,source=/src/scripts,target=/mnt/b2ckeys-scripts \
    PYTHONDONTWRITEBYTECODE=1 /opt/b2ckeys/bin/python /mnt/b2ckeys-scripts/compile_imported.py \
        b2ckeys.main b2ckeys.handlers b2ckeys.graph.msgraph:warm_up_models
ENV PATH=/opt/b2ckeys/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
# Kopf's liveness endpoint (the CMD's --liveness URL; deploy/base probes it).
EXPOSE 8080
ENTRYPOINT ["b2ckeys"]
CMD ["run", "--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz"]
