# syntax=docker/dockerfile:1
# Both binaries from one build; docker-compose.yml picks a target: `collector` or `scheduler`.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The dependencies alone: this layer is rebuilt only when Cargo.toml or Cargo.lock change.
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p collector -p scheduler \
 && strip target/release/collector target/release/scheduler

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app

FROM runtime AS collector
COPY --from=builder /src/target/release/collector /usr/local/bin/collector
# The migrations are embedded in the binary (`collector migrate`); here for reference.
COPY migrations /app/migrations
USER app
ENV COLLECTOR_ADDR=0.0.0.0:8000 LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/health/ready >/dev/null || exit 1
ENTRYPOINT ["tini", "--", "collector"]
CMD ["serve"]

FROM runtime AS scheduler
# python3 for agents run by the `command` agent (agents/python).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/scheduler/spool \
 && chown -R app /var/lib/scheduler
COPY --from=builder /src/target/release/scheduler /usr/local/bin/scheduler
COPY agents/python /app/agents/python
COPY schedules.toml /app/schedules.toml
USER app
ENV SCHEDULER_ADDR=0.0.0.0:8001 SCHEDULES_FILE=/app/schedules.toml \
    SPOOL_DIR=/var/lib/scheduler/spool LOG_FORMAT=json
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8001/health >/dev/null || exit 1
# tini reaps the processes that agents run through `command`.
ENTRYPOINT ["tini", "--", "scheduler"]
CMD ["serve"]
