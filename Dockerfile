# tuneserve: multi-stage build, slim non-root runtime, data on a volume.
#
#   docker build -t tuneserve .
#   docker run -p 8080:8080 -v tuneserve-data:/data tuneserve
#
# CUDA: docker build --build-arg FEATURES=cuda \
#         --build-arg BUILDER=nvidia/cuda:12.4.1-devel-ubuntu22.04 \
#         --build-arg RUNTIME=nvidia/cuda:12.4.1-runtime-ubuntu22.04 -t tuneserve:cuda .
#       (then run with --gpus all and TUNESERVE_DEVICES=cuda:0; the CUDA builder
#       image needs a Rust toolchain: see the rustup line below)
# Rust >= 1.89 (Cargo.toml's rust-version; zip via candle and uuid need it).
ARG BUILDER=rust:1-slim-bookworm
ARG RUNTIME=debian:bookworm-slim

FROM ${BUILDER} AS build
ARG FEATURES=""
RUN if ! command -v cargo >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends curl ca-certificates build-essential && \
      curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable; \
    fi
ENV PATH=/root/.cargo/bin:/usr/local/cargo/bin:$PATH
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
RUN cargo build --release --locked --features "${FEATURES}" \
    && cp target/release/tuneserve /usr/local/bin/tuneserve

FROM ${RUNTIME}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data tuneserve \
    && mkdir -p /data && chown tuneserve /data
COPY --from=build /usr/local/bin/tuneserve /usr/local/bin/tuneserve
USER tuneserve
ENV TUNESERVE_HOST=0.0.0.0 \
    TUNESERVE_PORT=8080 \
    TUNESERVE_DATA_DIR=/data \
    HF_HOME=/data/hf-cache
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["tuneserve"]
CMD ["serve"]
