# One image with the three binaries: the broker (the entrypoint), the
# operator (run with `--entrypoint /usr/local/bin/tideline-operator`) and
# the `tideline` CLI (`kubectl exec events-0 -- tideline cluster health`).
#
# Build stage: the Rust toolchain builds release binaries of the three
# packages from the locked dependency versions.
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tideline-broker -p tideline-operator -p tideline-cli

# Runtime stage: a slim Debian with the binaries, run as an unprivileged
# user that owns the data directory (the broker's volume is mounted there).
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 tideline \
    && useradd --system --uid 10001 --gid tideline --home-dir /var/lib/tideline --no-create-home tideline \
    && mkdir -p /var/lib/tideline/data \
    && chown -R tideline:tideline /var/lib/tideline
COPY --from=build /src/target/release/tideline-broker /usr/local/bin/tideline-broker
COPY --from=build /src/target/release/tideline-operator /usr/local/bin/tideline-operator
COPY --from=build /src/target/release/tideline /usr/local/bin/tideline
USER 10001:10001
WORKDIR /var/lib/tideline
ENV TIDELINE_LOG_DIRS=/var/lib/tideline/data
EXPOSE 9092 9093 9644
# Exec form: the broker is PID 1 and receives SIGTERM itself, so stopping
# the container (or deleting the pod) runs its controlled shutdown.
ENTRYPOINT ["/usr/local/bin/tideline-broker"]
