# PostgreSQL from Debian's packages, a stand-in for the official postgres image that docker-compose.local.yml uses
# where no registry is reachable: the same POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB variables, the same data
# folder (/var/lib/postgresql/data), pg_isready for the health check, and the server runs as user postgres.
ARG BASE_IMAGE=localhost/amst-debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
 && chmod 700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
