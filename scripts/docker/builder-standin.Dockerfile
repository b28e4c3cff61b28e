# A stand-in for rust:1-slim-bookworm where Docker Hub is out of reach
# (scripts/docker_check.sh builds it): Debian's own Rust on a base image
# bootstrapped from Debian's mirror. BASE is that image; its suite must carry
# Rust >= 1.89 (forky does) and be the runtime stage's too (glibc).
#
# The build context holds this machine's extra CA certificates (possibly
# none): where TLS is intercepted, cargo needs them to reach crates.io. Only
# this local stand-in carries them, never the Dockerfile users build.
ARG BASE
FROM ${BASE}
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       rustc cargo build-essential pkg-config ca-certificates \
    && update-ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
