# One image for every role: switchboard operator | gateway | config-sync | render | validate.
#   docker build -t ghcr.io/switchboard-dev/switchboard:0.1.0 .

# Stage 1: build the wheels (the package and its dependencies) and install them into a venv.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --wheel-dir /wheels .
RUN python -m venv /opt/switchboard
RUN /opt/switchboard/bin/pip install --no-index --find-links /wheels switchboard

# Stage 2: the runtime: the venv only, no build tools, no wheels, a non-root user.
FROM python:3.11-slim
COPY --from=build /opt/switchboard /opt/switchboard
ENV PATH=/opt/switchboard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# uid/gid 65532 (the chart's runAsUser); numeric, so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["switchboard"]
CMD ["--help"]
