# A stand-in for postgres:16 where Docker Hub is out of reach
# (scripts/docker_check.sh builds it): Debian's PostgreSQL on a base image
# bootstrapped from Debian's mirror, with the parts of the official image's
# interface the compose files use: POSTGRES_USER, POSTGRES_PASSWORD and
# POSTGRES_DB create the database on first start, data in
# /var/lib/postgresql/data, the command is `postgres [ARGS]`, pg_isready.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && ln -sf /usr/lib/postgresql/*/bin/* /usr/local/bin/ \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql \
    && chmod 700 /var/lib/postgresql/data
COPY postgres-standin-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER postgres
ENV PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
