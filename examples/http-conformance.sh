#!/usr/bin/env bash
# Runs the public HTTP caching test suite (https://github.com/http-tests/cache-tests)
# against the caching reverse proxy of this repository (`http-cache-proxy`),
# and tabulates the results beside the suite's published results for nginx,
# Varnish, Squid, Apache Traffic Server and Apache httpd.
#
#   examples/http-conformance.sh [memory|redis://HOST:PORT/] [SUITE_DIR]
#
# Needs Node.js (14.8 or newer) and git; SUITE_DIR (default
# target/cache-tests) is cloned and `npm install`ed when missing. Writes
# the suite's raw results to target/conformance-<backend>.json and prints
# the table (Markdown) on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-memory}"
suite="${2:-target/cache-tests}"
origin_port="${ORIGIN_PORT:-18000}"
proxy_port="${PROXY_PORT:-18080}"

if [[ ! -d "$suite" ]]; then
  git clone --quiet https://github.com/http-tests/cache-tests "$suite"
fi
if [[ ! -d "$suite/node_modules" ]]; then
  (cd "$suite" && npm install --no-audit --no-fund >/dev/null)
fi
suite="$(cd "$suite" && pwd)"

cargo build --quiet -p cache-examples --bin http-cache-proxy
target_dir="${CARGO_TARGET_DIR:-target}"
proxy_bin="$target_dir/debug/http-cache-proxy"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# `npm run server --port=N` and `npm run cli --base=URL`, without npm in
# between (so that the server's process id is the one to stop).
(cd "$suite" && npm_config_port="$origin_port" npm_config_protocol=http \
  npm_config_pidfile="$(mktemp)" exec node test-engine/server/server.mjs) >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$origin_port/" 2>/dev/null && break
  sleep 0.2
done
args=(--origin "http://127.0.0.1:$origin_port" --listen "127.0.0.1:$proxy_port" --grace 3600)
if [[ "$backend" != memory ]]; then
  args+=(--redis "$backend")
fi
"$proxy_bin" "${args[@]}" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$proxy_port/" 2>/dev/null && break
  sleep 0.2
done

name="$([[ "$backend" == memory ]] && echo memory || echo redis)"
out="$(pwd)/target/conformance-$name.json"
mkdir -p target
(cd "$suite" && npm run --silent cli --base="http://127.0.0.1:$proxy_port") >"$out"
node examples/conformance/summary.mjs "$suite" "CacheLayer ($name)=$out"
