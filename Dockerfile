# syntax=docker/dockerfile:1
#
# One image with every shadowdiff binary; the command picks the service:
#
#   docker build -t shadowdiff:local .
#   docker run --rm -v "$PWD/deploy/compose:/etc/shadowdiff:ro" shadowdiff:local \
#     shadowdiff-verdict --config /etc/shadowdiff/verdict.toml
#
# Stages: `chef` (toolchain + cargo-chef), `planner` (the dependency recipe, which changes
# only when a Cargo.toml or Cargo.lock does), `builder` (dependencies compiled in their own
# cached layer, then the workspace) and `runtime` (Debian slim, non-root, binaries only).
# Builder and runtime are both bookworm, so the binaries find the glibc they were linked to.
#
# The runtime base is named by its Debian release and snapshot date, and pinned by the
# digest of that tag's multi-platform index, so a rebuild gets the same bytes whatever the
# tag points to later. Move both together, to a newer bookworm snapshot (its digest is in
# docker-library/repo-info, repos/debian/remote/) or to the next release with the builder.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-20260918-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251

FROM ${RUST_IMAGE} AS chef
# rdkafka (features `tokio`, `libz`, see Cargo.toml) builds its bundled librdkafka with
# ./configure and make, linking the system zlib; mimalloc needs a C compiler too. No cmake,
# OpenSSL, SASL or zstd headers are needed while those rdkafka features stay off.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential make pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# The binaries the image ships. Cooking and building select the same binaries, so Cargo
# unifies features the same way twice and the cooked dependencies are reused as they are.
ARG BINS="shadowdiff-tap shadowdiff-mirror shadowdiff-correlator shadowdiff-verdict shadowdiff-demo shadowctl"
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json $(printf -- '--bin %s ' $BINS)
COPY . .
RUN cargo build --release --locked $(printf -- '--bin %s ' $BINS) \
    && mkdir -p /out \
    && for bin in $BINS; do cp "target/release/$bin" /out/; done

FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates for TLS to brokers, ClickHouse and upstreams; curl for container
# healthchecks (docker-compose.yaml). zlib1g, which librdkafka links, is part of the base.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 shadowdiff \
    && useradd --system --uid 10001 --gid shadowdiff --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin shadowdiff
COPY --from=builder /out/ /usr/local/bin/
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
# Service ports: tap 8080, verdict 8090; admin (/healthz, /metrics) tap 9464, mirror 9465,
# correlator 9466, verdict 9467. Each service is configured by --config FILE plus
# SHADOWDIFF_<SECTION>_<KEY> environment overrides (README, "Configuration").
EXPOSE 8080 8090 9464 9465 9466 9467
CMD ["shadowctl", "--help"]
