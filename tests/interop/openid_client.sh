#!/usr/bin/env bash
# Runs openid_client_flow.mjs (panva's openid-client) against a fresh Latchkey on a
# loopback port. Needs node and the package installed under $1 (node_modules root).
set -euo pipefail
modules="$1"
bin="${LATCHKEY_BIN:-target/debug/latchkey}"
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$tmp/latchkey.toml" <<TOML
issuer = "https://127.0.0.1:$port"
listen = "127.0.0.1:$port"
data_dir = "$tmp/data"
[password]
memory_kib = 19456
iterations = 2
TOML
echo "correct horse battery staple" | "$bin" user add alice --email alice@example.com --password-stdin --config "$tmp/latchkey.toml" >/dev/null
"$bin" serve --config "$tmp/latchkey.toml" > "$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  [ -f "$tmp/data/tls/cert.pem" ] && curl -sf --cacert "$tmp/data/tls/cert.pem" "https://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
client=$("$bin" client add --name openid-client --redirect-uri http://127.0.0.1:9/cb --json --config "$tmp/latchkey.toml")
id=$(printf '%s' "$client" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
secret=$(printf '%s' "$client" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')
cp "$(dirname "$0")/openid_client_flow.mjs" "$modules/"
NODE_EXTRA_CA_CERTS="$tmp/data/tls/cert.pem" node "$modules/openid_client_flow.mjs" \
  "https://127.0.0.1:$port" - "$id" "$secret" http://127.0.0.1:9/cb alice "correct horse battery staple" \
  || { cat "$tmp/server.log"; exit 1; }
