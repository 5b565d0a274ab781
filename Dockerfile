# syntax=docker/dockerfile:1
# One image for every Flotilla service: `docker run IMAGE router|control-plane|agent|sim|up ...`.
#
# Two stages: the first builds wheels (ours and our dependencies'), the second installs only those
# wheels into a clean slim image, so no compiler, pip cache or source tree is in the final image.
# Every dependency ships manylinux wheels for amd64 and arm64 (uvloop, httptools, orjson, numpy),
# so neither stage needs build tools.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY flotilla ./flotilla
COPY fleet ./fleet
COPY router ./router
COPY control_plane ./control_plane
COPY worker_agent ./worker_agent
COPY simulator ./simulator
# The `gpu` extra (NVML bindings, pure Python) lets the agent read GPU utilisation on GPU hosts.
# requirements.txt names what the final stage installs; with --no-index the versions are exactly
# the wheels built here.
RUN pip wheel --wheel-dir /wheels ".[gpu]" \
    && echo "flotilla[gpu]" > /wheels/requirements.txt

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="flotilla" \
      org.opencontainers.image.description="Serve LLMs from Spot GPUs behind one OpenAI-compatible URL" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LOG_FORMAT=json
RUN groupadd --system --gid 10001 flotilla \
    && useradd --system --uid 10001 --gid flotilla --home-dir /var/lib/flotilla \
       --create-home --shell /usr/sbin/nologin flotilla \
    && install -d -o flotilla -g flotilla -m 0700 /var/lib/flotilla/state
# Install from the wheels only (no index): the image gets exactly what the build stage resolved.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels --requirement=/wheels/requirements.txt
USER 10001:10001
WORKDIR /var/lib/flotilla
# /var/lib/flotilla/state (mode 0700) is for the agent's WORKER_AUTH_TOKEN_FILE: mount a volume
# there to keep the enrollment token across restarts (docker-compose.yml does for agent-gpu).
# router / sim 8000, control plane 8003, agent 8080
EXPOSE 8000 8003 8080
ENTRYPOINT ["flotilla"]
CMD ["--help"]
