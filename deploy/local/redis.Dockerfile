# Redis from Debian's packages, a stand-in for the official redis image that docker-compose.local.yml uses where no
# registry is reachable: listens on every interface of the compose network, keeps nothing on disk (it is only the
# broker: the run store in PostgreSQL is the source of truth), redis-cli for the health check, runs as user redis.
ARG BASE_IMAGE=localhost/amst-debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
USER redis
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
