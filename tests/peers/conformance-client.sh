#!/usr/bin/env bash
# The MCP conformance suite's client command, made of the gateway's own commands only:
# `login` (OAuth scenarios), `tools` and `call`. The suite passes the scenario's server URL as the
# last argument, the scenario's name in MCP_CONFORMANCE_SCENARIO and, for some, credentials in
# MCP_CONFORMANCE_CONTEXT (JSON). MCPMW_BIN is the gateway binary under test.
set -u
URL="${@: -1}"
DIR=$(mktemp -d "${TMPDIR:-/tmp}/mcpmw-conformance.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
SCENARIO=${MCP_CONFORMANCE_SCENARIO:-}
CONTEXT=${MCP_CONFORMANCE_CONTEXT:-"{}"}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$CONTEXT" "$1"; }
ID=$(field client_id)
SECRET=$(field client_secret)
CONFIG="$DIR/config.yaml"
{
  echo "listen: 127.0.0.1:0"
  echo "builtin_tools: {enabled: false}"
  echo "state: {url: \"sqlite://$DIR/state.db\", encryption_key: conformance-run-key-0123456789abcdef}"
  echo "mcpServers:"
  echo "  conf:"
  echo "    url: $URL"
  case "${SCENARIO##*/}" in
    initialize|tools_call|sse-retry) ;;
    *)
      echo "    auth:"
      echo "      oauth:"
      if [ -n "$ID" ]; then echo "        client_id: $ID"; fi
      if [ -n "$SECRET" ]; then echo "        client_secret: $SECRET"; fi
      case "$SCENARIO" in *client-credentials-*) echo "        grant: client_credentials" ;; esac
      echo "        client_metadata_url: https://conformance-test.local/client-metadata.json"
      ;;
  esac
} > "$CONFIG"
gateway() { "$MCPMW_BIN" --config "$CONFIG" "$@"; }
case "${SCENARIO##*/}" in
  initialize) gateway tools ;;
  tools_call) gateway tools && gateway call conf__add_numbers '{"a": 2, "b": 3}' ;;
  sse-retry) gateway tools && gateway call conf__test_reconnection '{}' ;;
  *)
    gateway login conf --follow || exit 1
    gateway tools
    # A server that wants more scopes for the call (step-up) gets a second sign-in.
    gateway call conf__test-tool '{}' || { gateway login conf --follow && gateway call conf__test-tool '{}'; }
    ;;
esac
