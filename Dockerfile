# Minimal image: build the release binary, run it with the shipped config.
# (The MCP-server runtimes such as Node for npx-based servers are added by a later change.)
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mcp-middleware

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mcp-middleware /usr/local/bin/mcp-middleware
COPY config.yaml /etc/mcp-middleware/config.yaml
ENV MCP_MIDDLEWARE_CONFIG=/etc/mcp-middleware/config.yaml
# Reachable from other containers; so it needs MCP_MIDDLEWARE_API_KEY (or MCP_MIDDLEWARE_OPEN=true
# to serve without keys deliberately), else it refuses to start and says why.
ENV MCP_MIDDLEWARE_LISTEN=0.0.0.0:4001
EXPOSE 4001
# Liveness for orchestrators: GET /health/liveliness on :4001.
ENTRYPOINT ["/usr/local/bin/mcp-middleware"]
