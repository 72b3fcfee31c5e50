#  Stand-in for the postgres:15 image, for a host that reaches no registry:
#  Debian's postgresql-15 on the local debian:bookworm. It honours what the
#  compose file uses of the official image: POSTGRES_USER, POSTGRES_PASSWORD,
#  POSTGRES_DB, PGDATA (initialised on first start), port 5432, pg_isready,
#  and it runs as the postgres user on a read-only root filesystem.
#  SPDX-License-Identifier: MPL-2.0
ARG DEBIAN_IMAGE=debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data \
 && chown -R postgres:postgres /var/lib/postgresql \
 && mkdir -p /var/run/postgresql \
 && chmod 3777 /var/run/postgresql      # as the official image: a tmpfs there keeps the mode
COPY postgres-entrypoint /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
