# One image for every role: switchboard operator | gateway | config-sync | render | validate.
#
#   make image                      # the way the tests build it (tools/image/build.sh)
#   docker build -t ghcr.io/switchboard-dev/switchboard:0.1.0 .
#
# BASE_IMAGE is any Debian bookworm image with Python 3.11 in it:
#   python:3.11-slim-bookworm       the official Python image (the default; needs Docker Hub)
#   debian:bookworm-slim            Debian's python3 is installed below, from Debian's archive
#   localhost/switchboard-base:...  made offline by tools/image/base.sh (mmdebstrap), already
#                                   holding Debian's python3 and python3-venv
# pip settings for a mirror or a proxy: --build-arg PIP_INDEX_URL=... (and PIP_EXTRA_INDEX_URL,
# HTTPS_PROXY, NO_PROXY); a CA bundle for an intercepting proxy: --secret id=pip_cert,src=FILE
# (a secret, so it stays out of every layer).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Stage 0: the base of both stages, with a python3 that has venv.
FROM ${BASE_IMAGE} AS base
RUN if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'

# Stage 1: wheels of the dependencies (a layer kept while pyproject.toml is unchanged), then of
# the package; a venv installed from those wheels alone, without pip and setuptools.
FROM base AS build
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python3 -m venv /opt/pip && /opt/pip/bin/python -m pip --version
COPY pyproject.toml README.md ./
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && if [ -z "${PIP_INDEX_URL:-}" ]; then unset PIP_INDEX_URL; fi \
    && if [ -z "${PIP_EXTRA_INDEX_URL:-}" ]; then unset PIP_EXTRA_INDEX_URL; fi \
    && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
    && /opt/pip/bin/python -m pip install -q "setuptools>=70" wheel \
    && /opt/pip/bin/python -m pip wheel -q --wheel-dir /wheels -r requirements.txt
COPY operator/ operator/
RUN /opt/pip/bin/python -m pip wheel -q --no-deps --no-build-isolation --wheel-dir /wheels .
RUN python3 -m venv /opt/switchboard \
    && /opt/switchboard/bin/python -m pip install -q --no-index --find-links /wheels switchboard \
    && /opt/switchboard/bin/python -m pip uninstall -q -y pip setuptools \
    && /opt/switchboard/bin/switchboard --version

# Stage 2: the runtime: the base and the venv; no pip, no compiler, no wheels, no sources.
FROM base
COPY --from=build /opt/switchboard /opt/switchboard
# A passwd entry for uid 65532, so that getpass/pwd lookups work; the uid stays numeric below.
RUN echo 'switchboard:x:65532:65532:switchboard:/tmp:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'switchboard:x:65532:' >> /etc/group
# Nothing is written outside /tmp at run time (the chart mounts the root file system read-only
# and an emptyDir at /tmp): no bytecode files, HOME in /tmp.
ENV PATH=/opt/switchboard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# uid/gid 65532 (the chart's runAsUser); numeric, so runAsNonRoot can verify it.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["switchboard"]
CMD ["--help"]
