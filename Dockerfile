# tuneserve: multi-stage build, slim non-root runtime, data on a volume.
# Needs BuildKit (the default since Docker 23; DOCKER_BUILDKIT=1 before that):
# the cargo registry and target folder are cache mounts, so a rebuild after a
# source change compiles only what changed.
#
#   docker build -t tuneserve .
#   docker run -p 8080:8080 -v tuneserve-data:/data tuneserve
#
# CUDA (not built by scripts/docker_check.sh, which has no GPU; CUDA 13.0 to
# match the GPU machines' driver, see README "GPU"):
#   docker build --build-arg FEATURES=cuda --build-arg CUDA_COMPUTE_CAP=90 \
#     --build-arg BUILDER=nvidia/cuda:13.0.0-devel-ubuntu24.04 \
#     --build-arg RUNTIME=nvidia/cuda:13.0.0-runtime-ubuntu24.04 -t tuneserve:cuda .
#   docker run --gpus all -e TUNESERVE_DEVICES=cuda:0 -p 8080:8080 -v tuneserve-data:/data tuneserve:cuda
# The CUDA builder image has no Rust: the first RUN installs one with rustup.
# CUDA_COMPUTE_CAP is the GPU's (90: H100/H200): the build sees no GPU to ask.
# BUILDER and RUNTIME must come from the same distribution release: a binary
# linked against a newer glibc does not start on an older one.
# Rust >= 1.89 (Cargo.toml's rust-version; zip via candle and uuid need it).
ARG BUILDER=rust:1-slim-bookworm
ARG RUNTIME=debian:bookworm-slim

FROM ${BUILDER} AS build
ARG FEATURES=""
ARG CUDA_COMPUTE_CAP=""
# The commit for tuneserve_build_info (.git is not in the build context).
ARG TUNESERVE_COMMIT=""
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH
RUN if ! command -v cargo >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends curl ca-certificates build-essential && \
      curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable; \
    fi
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
COPY web web
COPY assets assets
# A stripped binary without debug info (the release profile keeps line tables
# for local backtraces); target/ is a cache mount, so the binary is copied out.
# Build arguments reach the RUN as environment variables (an empty
# CUDA_COMPUTE_CAP is unset: candle's build would try to parse it).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    [ -n "${CUDA_COMPUTE_CAP}" ] || unset CUDA_COMPUTE_CAP; \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --features "${FEATURES}" \
    && cp target/release/tuneserve /usr/local/bin/tuneserve

# Only the binary and a user: no compiler, no package caches, no curl (the
# health check is `tuneserve health`). TLS to the Hub uses the roots built
# into the binary, so no ca-certificates either.
FROM ${RUNTIME}
RUN groupadd --system --gid 10001 tuneserve \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin tuneserve \
    && mkdir -p /data && chown tuneserve:tuneserve /data
COPY --from=build /usr/local/bin/tuneserve /usr/local/bin/tuneserve
USER tuneserve
ENV TUNESERVE_HOST=0.0.0.0 \
    TUNESERVE_PORT=8080 \
    TUNESERVE_DATA_DIR=/data \
    HF_HOME=/data/hf-cache
VOLUME /data
EXPOSE 8080
# Asks http://127.0.0.1:$TUNESERVE_PORT/health; healthy only while it says `ok`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["tuneserve", "health"]
# SIGTERM hands running jobs back to the queue; give it --shutdown-timeout-secs
# (30) and a little: docker stop -t 40, or stop_grace_period in compose.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tuneserve"]
CMD ["serve"]
