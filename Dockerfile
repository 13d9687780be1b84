# mcp-middleware as a container sidecar: the gateway, plus the runtimes stdio MCP servers need
# (Node.js with npx, Python with uv/uvx), running as a non-root user with writable caches.
#
#   docker build -t mcp-middleware .
#   docker run -p 4001:4001 -e MCP_MIDDLEWARE_API_KEY=sk-... -e LITELLM_MASTER_KEY=sk-... \
#     -e UPSTREAM_BASE_URL=http://litellm:4000/v1 mcp-middleware
#
# See deploy/compose/compose.yaml for the whole stack and README.md ("Running as a sidecar").

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tools ./tools
COPY benches ./benches
# Cache the registry and the target directory between builds; copy the binary out of the cache.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin mcp-middleware --bin mcp-builtin-tools \
    && cp target/release/mcp-middleware target/release/mcp-builtin-tools /usr/local/bin/

# Node.js 22 (with npm and npx) from the official image: Debian bookworm's own nodejs is 18,
# older than what the servers we recommend declare (@playwright/mcp: node >= 20); the deploy
# test checks this version against every recommended package's `engines`.
FROM node:22.21.1-bookworm-slim
# ca-certificates for HTTPS upstreams; Python + uv for `uvx` servers; git for servers that fetch
# repositories (mcp-server-git).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv python3-pip git \
    && pip3 install --no-cache-dir --break-system-packages uv==0.13.9 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/mcp-middleware /usr/local/bin/mcp-builtin-tools /usr/local/bin/
COPY config.yaml /etc/mcp-middleware/config.yaml
# A non-root user whose home holds the npm and uv caches and the local artifact store.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mcp \
    && mkdir -p /home/mcp/.npm /home/mcp/.cache/uv /data/artifacts \
    && chown -R mcp:mcp /home/mcp /data
USER mcp
WORKDIR /home/mcp
ENV MCP_MIDDLEWARE_CONFIG=/etc/mcp-middleware/config.yaml \
    HOME=/home/mcp \
    npm_config_cache=/home/mcp/.npm \
    UV_CACHE_DIR=/home/mcp/.cache/uv \
    ARTIFACT_DIR=/data/artifacts \
    MCP_MIDDLEWARE_LOG_FORMAT=json
# Reachable from other containers; so it needs MCP_MIDDLEWARE_API_KEY (or MCP_MIDDLEWARE_OPEN=true
# to serve without keys deliberately), else it refuses to start and says why.
ENV MCP_MIDDLEWARE_LISTEN=0.0.0.0:4001
EXPOSE 4001
VOLUME ["/data"]
# Liveness without curl or wget: the binary asks itself.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 CMD ["mcp-middleware", "health"]
ENTRYPOINT ["mcp-middleware"]
