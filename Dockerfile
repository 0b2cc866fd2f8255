# syntax=docker/dockerfile:1
# The tandem image: one binary on a small Debian base, run as an unprivileged user.
#
#   docker build -t tandem .
#   docker run -p 8200:8200 -v tandem-data:/var/lib/tandem tandem
#
# With no arguments the container runs a single-node server whose API and cluster port listen on
# every interface of the container (8200 and 8100); set TANDEM_NODES and the secrets for a cluster
# (docs/deploy.md). The same image runs agents: `docker run tandem agent ...`.

# Build stage: the release binary, built against the lock file. The cache mounts keep the crate
# registry and the build folder between builds; the binary is copied out of the cached folder.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tandem \
    && install -D -m 0755 target/release/tandem /out/tandem

# Runtime stage: glibc (the binary links it dynamically), CA certificates for https key peers and
# checks, and nothing else.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tandem \
    && useradd --system --uid 10001 --gid tandem --home-dir /var/lib/tandem --shell /usr/sbin/nologin tandem \
    && install -d -o tandem -g tandem -m 0700 /var/lib/tandem
COPY --from=build /out/tandem /usr/local/bin/tandem

# Listen on all of the container's interfaces; a server's default node list binds to 127.0.0.1,
# which nothing outside the container can reach. The API beyond loopback needs a TLS choice: plain
# HTTP here, for a container network or a TLS-terminating proxy; TANDEM_API_TLS=auto makes the
# server speak HTTPS with a certificate from the cluster's CA (docs/operations.md).
ENV TANDEM_DATA_DIR=/var/lib/tandem \
    TANDEM_NODES="1 0.0.0.0:8100 0.0.0.0:8200" \
    TANDEM_API_TLS=off \
    TANDEM_LOG_FORMAT=json
VOLUME ["/var/lib/tandem"]
# 8200: client API, /ui, /metrics. 8100: cluster port (mutual TLS). 4433/udp: an agent's mesh.
EXPOSE 8200 8100 4433/udp
USER 10001:10001
WORKDIR /var/lib/tandem
ENTRYPOINT ["/usr/local/bin/tandem"]
CMD ["server"]
