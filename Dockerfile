# syntax=docker/dockerfile:1
# The Dirt Free CRM server image: the `api` server and the `replay-tools` operator CLI.
# How to build, configure and run it: docs/deploy.md.
#
#   docker build --build-arg DIRTFREE_BUILD=$(git rev-parse --short=12 HEAD) -t dirtfree-crm .

# --- builder: the toolchain the project is built and tested with (rustc 1.95) ---
FROM rust:1.95-trixie AS builder
WORKDIR /src
COPY . .
# The commit `GET /api/version` reports (api/build.rs); .git is not sent to the builder,
# so without this argument the version says "unknown".
ARG DIRTFREE_BUILD=unknown
# Cache mounts keep the crate registry and the target dir between builds; the binaries
# are copied out in the same step because the cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p api -p replay-tools \
 && mkdir -p /out \
 && cp target/release/api target/release/replay-tools /out/

# --- runtime ---
FROM debian:trixie-slim
# ca-certificates for the vendors' https APIs; curl for the health check below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
# A dedicated user without a login; /data holds the embedded SQLite store when one is used
# (DATABASE_URL=sqlite:///data/dirtfree.db) and nothing when the store is PostgreSQL.
RUN groupadd --system --gid 10001 dirtfree \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin dirtfree \
 && mkdir -p /data \
 && chown dirtfree:dirtfree /data \
 && chmod 0700 /data
COPY --from=builder /out/api /out/replay-tools /usr/local/bin/
# Migrations are compiled into the binaries (sqlx::migrate!): nothing else to copy.
ENV BIND_ADDR=0.0.0.0:8080
WORKDIR /data
VOLUME /data
USER 10001:10001
EXPOSE 8080
# Ready = started (migrations, first admin, read models caught up) and the database answers.
# Start-up may take up to 5 minutes while read models catch up after an upgrade.
# The URL assumes the port above: change both if BIND_ADDR changes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5m --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/api/health/ready || exit 1
ENTRYPOINT ["api"]
