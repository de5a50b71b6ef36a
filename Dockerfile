# One image for every AMST Studio process: `amst db upgrade`, `amst serve api`, `amst serve worker`, `amst serve ui`.
#
# Why python:3.11-slim and no nvidia/cuda base image: constraints.txt pins torch==2.11.0, and PyPI's Linux x86_64
# wheel of torch 2.11.0 is the CUDA build (CUDA 13.0); the CUDA runtime, cuDNN, NCCL... arrive as pip dependencies
# (nvidia-* wheels). The container therefore carries its own CUDA user-space libraries and the host needs only
# the NVIDIA driver (R580 or newer for CUDA 13) and the NVIDIA Container Toolkit. The same image runs on a host
# without a GPU (api, ui, CPU workers): torch then falls back to the CPU. Details: Doc/deploy.md.
#
# BASE_IMAGE: any Debian bookworm image works; one without Python (docker-compose.local.yml builds on a base made
# by deploy/local/base-image.sh from Debian's packages, no registry needed) gets Debian's python3, also 3.11.
#
# Nothing secret is baked in: every setting comes from the environment at run time (docker-compose.yml, .env).
# A network that intercepts TLS needs its CA bundle for pip: pass it as the build secret `build_ca`
# (`--secret id=build_ca,src=/etc/ssl/certs/ca-certificates.crt`); it is mounted for the pip step only.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/amst/bin:$PATH

# Python in a virtual environment at /opt/amst: the same path on either base, and no pip into Debian's own Python.
RUN if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        apt-get update \
     && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
     && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/amst

# Dependencies first, from pyproject.toml and constraints.txt alone: this large layer (torch and its CUDA wheels)
# is rebuilt only when the pins change, not on every code change. The image is the whole product: the worker's
# dependencies and the ui, media and stats extras; constraints.txt pins the torch family's exact versions.
# The wheels are downloaded into a cache mount that outlives the build (and stays out of the image), then installed
# from there: a rebuild downloads only what changed. A plain pip cache would not do: pip stores only what the index
# lets it cache, and a proxy that says no-store leaves it empty. setuptools comes along to build the project below.
COPY pyproject.toml constraints.txt /tmp/deps/
RUN --mount=type=cache,target=/root/.cache/amst-wheels,sharing=locked --mount=type=secret,id=build_ca \
    if [ -s /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi \
 && python -c "import tomllib; p = tomllib.load(open('/tmp/deps/pyproject.toml', 'rb')); print(*p['build-system']['requires'], *p['project']['dependencies'], *(d for e in ('ui', 'media', 'stats') for d in p['project']['optional-dependencies'][e]), sep=chr(10))" \
      > /tmp/deps/requirements.txt \
 && pip download --progress-bar off -d /root/.cache/amst-wheels -c /tmp/deps/constraints.txt -r /tmp/deps/requirements.txt \
 && pip install --no-cache-dir --no-index --find-links /root/.cache/amst-wheels -c /tmp/deps/constraints.txt \
      -r /tmp/deps/requirements.txt \
 && mkdir -p /opt/amst/build-wheels \
 && cp /root/.cache/amst-wheels/setuptools-*.whl /opt/amst/build-wheels/ \
 && rm -rf /tmp/deps

# The project itself, built offline with the setuptools wheel kept above. amst_core/store/migrate.py finds Alembic's
# migrations/ next to the amst_core package (Path(__file__).parents[2] / "migrations"), i.e. in site-packages once
# installed: copy it there, and fail the build if the code would not find it.
COPY . /tmp/src
RUN pip install --no-cache-dir --no-index --find-links /opt/amst/build-wheels --no-deps /tmp/src \
 && rm -rf /opt/amst/build-wheels \
 && cp -r /tmp/src/migrations "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/migrations" \
 && rm -rf /tmp/src \
 && python -c "from amst_core.store.migrate import MIGRATIONS; assert (MIGRATIONS / 'env.py').is_file(), MIGRATIONS" \
 && amst --help > /dev/null

# A non-root user owning everything the processes write: datasets, artifacts (checkpoints), AMST_HOME (caches).
# Named volumes mounted on these paths start with this ownership.
RUN groupadd --system --gid 10001 amst \
 && useradd --system --uid 10001 --gid amst --home-dir /var/lib/amst --shell /usr/sbin/nologin amst \
 && mkdir -p /data /artifacts /var/lib/amst \
 && chown -R amst:amst /data /artifacts /var/lib/amst
ENV HOME=/var/lib/amst \
    AMST_HOME=/var/lib/amst \
    AMST_DATA_ROOT=/data \
    AMST_ARTIFACTS=/artifacts
USER amst
WORKDIR /var/lib/amst

EXPOSE 8000 8501
ENTRYPOINT ["amst"]
CMD ["serve", "api", "--host", "0.0.0.0", "--port", "8000"]
