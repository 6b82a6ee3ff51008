#!/usr/bin/env bash
# make bench: runs every benchmark against a Release build and writes bench/results/*.md.
# Figures are printed and recorded; nothing here passes or fails on timing.
# Usage: bench/run.sh <release build dir> [scenario ...]   (default: all scenarios)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build/release}"
shift || true
scenarios=("$@")
[ "${#scenarios[@]}" -gt 0 ] || scenarios=(http group_commit inventory flash_sale payments catalog checkout mixed)
results=bench/results
mkdir -p "$results"
work=$(mktemp -d /tmp/emporium-bench.XXXXXX)
# nginx workers run as an unprivileged user: they must be able to read the served files.
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

machine_header() {
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
  echo "- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "- compiler: $(c++ --version | head -1)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
}

free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

wait_http() {  # wait_http URL: polls until the URL answers, bounded to 10 s
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "bench: $1 did not come up" >&2
  cat "$work"/nginx/logs/error.log "$work"/bench-server.log 2>/dev/null >&2 || true
  return 1
}

# start_sandbox NAME: `emporium psp-sandbox` on a free port with its books in $work/NAME-psp;
# sets the caller's sandbox_port and sandbox_pid and waits (bounded: 10 s) until any HTTP answer comes back.
start_sandbox() {
  sandbox_port=$(free_port)
  mkdir -p "$work/$1-psp"
  "$emporium" psp-sandbox --port "$sandbox_port" --data-dir "$work/$1-psp" \
    >"$work/$1-psp.log" 2>&1 &
  sandbox_pid=$!
  pids+=("$sandbox_pid")
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$sandbox_port/" && return 0
    sleep 0.1
  done
}

# start_shop_server NAME DATA_DIR [serve args ...]: `emporium serve` on a free port with the
# caller's admin_key, rate limits off and log level warn, logging to $work/NAME-server.log; sets
# the caller's port and server_pid. Fails (printing the log) unless /readyz answers within 60 s.
start_shop_server() {
  local name="$1" data="$2"
  shift 2
  port=$(free_port)
  "$emporium" serve --data-dir "$data" --set server.port="$port" --set log.level=warn \
    --set admin.api_key="$admin_key" --set gateway.read_per_minute=0 \
    --set gateway.write_per_minute=0 --set gateway.checkout_per_minute=0 "$@" \
    >"$work/$name-server.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 1 1200); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && return 0
    sleep 0.05
  done
  echo "bench: emporium serve not ready" >&2
  cat "$work/$name-server.log" >&2
  return 1
}

# wrk_run NAME URL [wrk args, e.g. -s script.lua] -> prints "req/s p50 p99" from a 2-thread,
# ${WRK_CONNECTIONS:-64}-connection, ${WRK_SECONDS:-15} s run (output kept in $work/wrk-NAME.txt).
wrk_run() {
  local out="$work/wrk-$1.txt" url="$2"
  shift 2
  wrk -t2 -c"${WRK_CONNECTIONS:-64}" -d"${WRK_SECONDS:-15}"s --latency "$@" "$url" >"$out"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/{print $2}' "$out")
  p50=$(awk '$1=="50%"{print $2}' "$out")
  p99=$(awk '$1=="99%"{print $2}' "$out")
  echo "$rps $p50 $p99"
}

start_nginx() {  # start_nginx PORT ROOT
  mkdir -p "$work/nginx/logs"
  cat >"$work/nginx/nginx.conf" <<CONF
worker_processes $(nproc);
error_log $work/nginx/logs/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  default_type application/json;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server { listen 127.0.0.1:$1; root $2; }
}
CONF
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
  pids+=($!)
}

bench_http() {
  local server="$build_dir/src/platform/http/http_bench_server"
  [ -x "$server" ] || { echo "bench: $server missing"; return 0; }
  local emporium_port nginx_port
  emporium_port=$(free_port)
  "$server" --port "$emporium_port" --threads "$(nproc)" >"$work/bench-server.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$emporium_port/bench.json"
  mkdir -p "$work/www"
  curl -fs "http://127.0.0.1:$emporium_port/bench.json" >"$work/www/bench.json"
  chmod -R a+rX "$work/www"
  nginx_port=$(free_port)
  start_nginx "$nginx_port" "$work/www"
  wait_http "http://127.0.0.1:$nginx_port/bench.json"
  local bytes
  bytes=$(wc -c <"$work/www/bench.json")
  echo "http: emporium vs nginx, ${bytes}-byte JSON body, wrk 2 threads x 64 connections"
  read -r e_rps e_p50 e_p99 < <(wrk_run emporium "http://127.0.0.1:$emporium_port/bench.json")
  read -r n_rps n_p50 n_p99 < <(wrk_run nginx "http://127.0.0.1:$nginx_port/bench.json")
  local ratio
  ratio=$(awk -v e="$e_rps" -v n="$n_rps" 'BEGIN{printf "%.2f", e/n}')
  {
    echo "# HTTP: Emporium vs nginx"
    echo
    machine_header
    echo "- nginx: $(nginx -v 2>&1 | sed 's/.*: //'); wrk 2 threads x 64 connections, ${WRK_SECONDS:-15} s each, same host"
    echo "- body: the same ${bytes}-byte JSON document; Emporium through its full router and middleware (request id, trace context, metrics)"
    echo
    echo "| server | req/s | p50 | p99 |"
    echo "|---|---:|---:|---:|"
    echo "| emporium | $e_rps | $e_p50 | $e_p99 |"
    echo "| nginx | $n_rps | $n_p50 | $n_p99 |"
    echo
    echo "Ratio Emporium/nginx: **$ratio** (target >= 0.7)."
  } | tee "$results/http.md"
}

bench_group_commit() {
  local binary="$build_dir/bench/group_commit_bench"
  [ -x "$binary" ] || binary="$build_dir/src/platform/sql/group_commit_bench"
  [ -x "$binary" ] || { echo "bench: group_commit_bench missing"; return 0; }
  "$binary" "$results/group_commit.md"
}

bench_inventory() {
  local binary="$build_dir/src/inventory/inventory_bench"
  [ -x "$binary" ] || { echo "bench: inventory_bench not built yet"; return 0; }
  "$binary" "$results/inventory.md"
  # A shard's memory and start-up over a long reservation history (settled ones evicted).
  local memory="$build_dir/src/inventory/inventory_evict_bench"
  [ -x "$memory" ] || { echo "bench: inventory_evict_bench not built yet"; return 0; }
  local output
  output=$("$memory" 200000) || { echo "bench: inventory_evict_bench failed"; return 0; }
  echo "$output"
  {
    echo
    echo "## Shard memory over a long history (inventory_evict_bench)"
    echo
    echo '```'
    echo "$output"
    echo '```'
  } >> "$results/inventory.md"
}

bench_payments() {
  local binary="$build_dir/src/tools/psp_sandbox/payments_bench"
  [ -x "$binary" ] || { echo "bench: payments_bench not built yet"; return 0; }
  "$binary" "$results/payments.md" --seconds "${PAYMENTS_SECONDS:-10}" --concurrency 64
}

# Catalog (issue 3). catalog_bench: ingestion through the durable queue, start-up and RSS
# (writes catalog.md); then `emporium serve` on the data directory it seeded: start-up to ready
# and RSS of the whole server, GET product by id (cached) beside nginx serving the same product
# JSON as static files (both picking from the same CATALOG_IDS ids), and /search with 1-3 word
# queries and facets at 16 connections. CATALOG_PRODUCTS (default 100000).
bench_catalog() {
  local binary="$build_dir/src/catalog/catalog_bench" emporium="$build_dir/src/app/emporium"
  [ -x "$binary" ] || { echo "bench: catalog_bench not built yet"; return 0; }
  [ -x "$emporium" ] || { echo "bench: $emporium missing"; return 0; }
  local products="${CATALOG_PRODUCTS:-100000}" id_count="${CATALOG_IDS:-1000}"
  local data="$work/catalog-data" report="$results/catalog.md"
  "$binary" "$report" --products "$products" --data-dir "$data"

  local port server_pid start_ns ready_ms=""
  port=$(free_port)
  start_ns=$(date +%s%N)
  "$emporium" serve --data-dir "$data" --set server.port="$port" --set log.level=warn \
    --set gateway.read_per_minute=0 >"$work/catalog-server.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 1 2400); do  # bounded: 120 s
    if curl -fs -o /dev/null "http://127.0.0.1:$port/readyz"; then
      ready_ms=$((($(date +%s%N) - start_ns) / 1000000))
      break
    fi
    sleep 0.05
  done
  [ -n "$ready_ms" ] || { echo "bench: emporium serve not ready" >&2; cat "$work/catalog-server.log" >&2; return 1; }
  local rss_ready_kb
  rss_ready_kb=$(awk '/VmRSS/{print $2}' "/proc/$server_pid/status")

  # The ids, the product JSON files for nginx and one wrk script per server.
  mkdir -p "$work/catalog-www/p"
  python3 - "$port" "$id_count" "$work" <<'PY'
import json, sys, urllib.request
port, limit, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"
ids, cursor = [], None
for _ in range(1000):  # bounded paging
    url = f"{base}/api/v1/products?limit=100" + (f"&cursor={cursor}" if cursor else "")
    page = json.load(urllib.request.urlopen(url))
    ids += [item["id"] for item in page["items"]]
    cursor = page.get("next_cursor")
    if not cursor or len(ids) >= limit:
        break
ids = ids[:limit]
for product_id in ids:  # also warms the server's read cache
    body = urllib.request.urlopen(f"{base}/api/v1/products/{product_id}").read()
    with open(f"{work}/catalog-www/p/{product_id}.json", "wb") as out:
        out.write(body)
lua_ids = ",".join(f'"{i}"' for i in ids)
for name, prefix, suffix in (("emporium", "/api/v1/products/", ""), ("nginx", "/p/", ".json")):
    with open(f"{work}/catalog-{name}.lua", "w") as out:
        out.write(f"local ids = {{{lua_ids}}}\nlocal n = #ids\n"
                  f"request = function() return wrk.format(\"GET\", \"{prefix}\" .. "
                  f"ids[math.random(n)] .. \"{suffix}\") end\n")
PY
  cat >"$work/catalog-search.lua" <<'LUA'
local words = {"running", "shoe", "hiking", "boot", "waterproof", "t-shirt", "organic", "hoodie",
  "fleece", "rain", "jacket", "headphones", "wireless", "speaker", "portable", "keyboard",
  "mechanical", "monitor", "ultrawide", "frying", "pan", "cast-iron", "coffee", "grinder", "burr",
  "desk", "chair", "ergonomic", "duvet", "linen", "tent", "ultralight", "sleeping", "bag", "down",
  "bike", "light", "rechargeable", "northwind", "acme", "summit", "fjord", "alpine", "trail",
  "studio", "compact", "steel", "merino", "cotton", "bamboo", "warranty", "everyday", "lumen"}
local brands = {"Northwind", "Acme", "Larkspur", "Halcyon", "Kestrel", "Bramble", "Orbit",
  "Tidewater", "Summit", "Ironbark", "Lumen", "Fjord"}
local categories = {"apparel", "apparel/shoes", "electronics", "electronics/audio",
  "home/kitchen", "outdoors", "outdoors/camping"}
request = function()
  local q = {}
  for i = 1, math.random(3) do q[i] = words[math.random(#words)] end
  local path = "/api/v1/search?q=" .. table.concat(q, "+")
  local facet = math.random(4)
  if facet == 1 then
    path = path .. "&brand=" .. brands[math.random(#brands)]
  elseif facet == 2 then
    path = path .. "&category=" .. categories[math.random(#categories)]
  end
  return wrk.format("GET", path)
end
LUA
  chmod -R a+rX "$work/catalog-www"
  local nginx_port nginx_pid
  nginx_port=$(free_port)
  start_nginx "$nginx_port" "$work/catalog-www"
  nginx_pid="${pids[-1]}"
  local sample
  sample=$(find "$work/catalog-www/p" -name '*.json' -printf '%f\n' -quit)
  wait_http "http://127.0.0.1:$nginx_port/p/$sample"
  local bytes
  bytes=$(du -cb "$work"/catalog-www/p/*.json | tail -1 | awk -v n="$(ls "$work/catalog-www/p" | wc -l)" '{printf "%d", $1 / n}')

  # catalog_bench has no relay, so the server starts with every product_changed event of the
  # ingestion still in its outbox; the reads are measured once the bus has delivered that
  # backlog (bounded: 600 s), not while the price read model is still absorbing it.
  local drain_start drained_s="not drained within 600 s"
  drain_start=$(date +%s)
  for _ in $(seq 1 1200); do
    if curl -fs "http://127.0.0.1:$port/metrics" |
        awk '/^emporium_bus_outbox_depth/{d += $NF; n++} END{exit !(n > 0 && d == 0)}'; then
      drained_s="$(($(date +%s) - drain_start)) s"
      break
    fi
    sleep 0.5
  done

  non2xx() { awk '/Non-2xx/{n=$NF} END{print n+0}' "$work/wrk-$1.txt"; }
  echo "catalog: GET product by id (cached), emporium vs nginx; /search at 16 connections"
  read -r e_rps e_p50 e_p99 < <(wrk_run catalog-emporium "http://127.0.0.1:$port" -s "$work/catalog-emporium.lua")
  read -r n_rps n_p50 n_p99 < <(wrk_run catalog-nginx "http://127.0.0.1:$nginx_port" -s "$work/catalog-nginx.lua")
  read -r s_rps s_p50 s_p99 < <(WRK_CONNECTIONS=16 wrk_run catalog-search "http://127.0.0.1:$port" -s "$work/catalog-search.lua")
  local rss_after_kb ratio
  rss_after_kb=$(awk '/VmRSS/{print $2}' "/proc/$server_pid/status")
  ratio=$(awk -v e="$e_rps" -v n="$n_rps" 'BEGIN{printf "%.2f", e/n}')
  kill "$server_pid" "$nginx_pid" 2>/dev/null || true
  {
    echo "## (c) GET product by id (cached): Emporium vs nginx"
    echo
    echo "- load average (1/5/15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- the ingestion's ${products} catalog.product_changed events were still in the outbox when the server started; measured after the bus delivered them (${drained_s} after the ids were read)"
    echo "- \`emporium serve\` on the data directory above (gateway read limit off, log level warn); nginx $(nginx -v 2>&1 | sed 's/.*: //') serving the same product JSON as static files"
    echo "- wrk 2 threads x 64 connections, ${WRK_SECONDS:-15} s each; a Lua script picks one of the same $id_count product ids per request for both servers (average body ${bytes} bytes)"
    echo
    echo "| server | req/s | p50 | p99 | non-2xx |"
    echo "|---|---:|---:|---:|---:|"
    echo "| emporium GET /api/v1/products/{id} | $e_rps | $e_p50 | $e_p99 | $(non2xx catalog-emporium) |"
    echo "| nginx GET /p/{id}.json | $n_rps | $n_p50 | $n_p99 | $(non2xx catalog-nginx) |"
    echo
    echo "Ratio Emporium/nginx: **$ratio** (target >= 0.7)."
    echo
    echo "## (d) Search"
    echo
    echo "GET /api/v1/search with 1-3 words from the catalog's vocabulary (prefix match on the last), half of them with a brand or category facet filter; facet counts computed on every query. wrk 2 threads x 16 connections, ${WRK_SECONDS:-15} s."
    echo
    echo "| req/s | p50 | p99 | non-2xx |"
    echo "|---:|---:|---:|---:|"
    echo "| $s_rps | $s_p50 | $s_p99 | $(non2xx catalog-search) |"
    echo
    echo "Target: p99 < 20 ms."
    echo
    echo "## The whole server"
    echo
    echo "| \`emporium serve\` start-up to ready (/readyz) | RSS ready | RSS after the runs |"
    echo "|---:|---:|---:|"
    echo "| ${ready_ms} ms | $((rss_ready_kb / 1024)) MiB | $((rss_after_kb / 1024)) MiB |"
  } | tee -a "$report"
}

# Checkout (issues 6 and 8): `emporium psp-sandbox` plus `emporium serve` on a fresh data
# directory (payments.psp_url at the sandbox, rate limits off), then `emporium loadgen
# --scenario checkout` (cart, 1-3 lines, checkout with Prefer: wait=10 per loop) once with the
# default group commit and once with storage.batch_jobs_max=1 (batching off), each on its own
# server and data directory. CHECKOUT_SECONDS (default 20), CHECKOUT_CONCURRENCY (default 32).
bench_checkout() {
  local emporium="$build_dir/src/app/emporium"
  [ -x "$emporium" ] || { echo "bench: $emporium missing"; return 0; }
  local seconds="${CHECKOUT_SECONDS:-20}" concurrency="${CHECKOUT_CONCURRENCY:-32}"
  local admin_key="bench-admin-key" report="$results/checkout.md" rows=()
  local sandbox_port sandbox_pid
  start_sandbox checkout

  local variant
  for variant in batched unbatched; do
    local port server_pid extra=()
    [ "$variant" = unbatched ] && extra=(--set storage.batch_jobs_max=1)
    start_shop_server "checkout-$variant" "$work/checkout-data-$variant" \
      --set payments.psp_url="http://127.0.0.1:$sandbox_port" "${extra[@]}" || return 1
    local out="$work/checkout-$variant"
    # The run ends with the server's invariant audit; a failed audit (exit 3/4) is recorded in
    # the table, not a reason to stop the other benchmarks.
    "$emporium" loadgen --url "http://127.0.0.1:$port" --scenario checkout --admin-key "$admin_key" \
      --concurrency "$concurrency" --duration "${seconds}s" --warmup 3s --timeout 15s \
      --no-progress --out "$out" | tee "$work/checkout-$variant.txt" || true
    rows+=("$(python3 - "$out/report.json" "$variant" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
s = report["scenario_summary"]
audit = (report.get("audit") or {}).get("verdict", "not run")
label = {"batched": "group commit on (default)", "unbatched": "batching off (storage.batch_jobs_max=1)"}[sys.argv[2]]
print(f"| {label} | {s['confirmed_per_second']:.1f} | {s['checkout_p50_us'] / 1000:.1f} ms | "
      f"{s['checkout_p99_us'] / 1000:.1f} ms | {s['confirmed_measured']} | {s['cancelled'] + s['rejected'] + s['pending']} | {s['errors']} | {audit} |")
PY
)")
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  done
  kill "$sandbox_pid" 2>/dev/null || true
  {
    echo "# Checkout: confirmed orders per second"
    echo
    machine_header
    echo "- load average (1/5/15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- \`emporium serve\` (fresh data directory, rate limits off, log level warn) with payments.psp_url at \`emporium psp-sandbox\` on the same host"
    echo "- \`emporium loadgen --scenario checkout\`: $concurrency connections, closed loop, 3 s warm-up, ${seconds} s measured; each loop creates a cart, adds 1-3 lines (20 products, ample stock) and checks out with \`Prefer: wait=10\` and a unique Idempotency-Key; every card approves"
    echo "- latency is of the checkout call alone (answered once the order is CONFIRMED or terminal)"
    echo
    echo "- audit: the server's invariant audit (POST /api/v1/admin/audit) after the run, once every order settled"
    echo
    echo "| server | confirmed/s | checkout p50 | checkout p99 | confirmed (measured) | not confirmed | errors | audit |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${rows[@]}"
  } | tee "$report"
}

# Mixed traffic: `emporium psp-sandbox` plus `emporium serve` on a fresh data directory (rate
# limits off), then `emporium loadgen --scenario mixed`: each loop of a connection is a browse
# request, a cart's life (create, add 1-3 lines, update, remove, read, abandon) or a checkout,
# picked by weight, and the run ends with the server's invariant audit. MIXED_SECONDS (default
# 20), MIXED_CONCURRENCY (default 64), MIXED_MIX (default browse=90,cart=8,checkout=2).
bench_mixed() {
  local emporium="$build_dir/src/app/emporium"
  [ -x "$emporium" ] || { echo "bench: $emporium missing"; return 0; }
  local seconds="${MIXED_SECONDS:-20}" concurrency="${MIXED_CONCURRENCY:-64}"
  local mix="${MIXED_MIX:-browse=90,cart=8,checkout=2}"
  local admin_key="bench-admin-key" report="$results/mixed.md" out="$work/mixed"
  local sandbox_port sandbox_pid port server_pid
  start_sandbox mixed
  start_shop_server mixed "$work/mixed-data" \
    --set payments.psp_url="http://127.0.0.1:$sandbox_port" || return 1
  # A failed audit (exit 3/4) is recorded in the report, not a reason to stop the others.
  "$emporium" loadgen --url "http://127.0.0.1:$port" --scenario mixed --mix "$mix" \
    --admin-key "$admin_key" --concurrency "$concurrency" --duration "${seconds}s" --warmup 3s \
    --timeout 15s --no-progress --out "$out" | tee "$work/mixed.txt" || true
  # The latency-over-time chart, linked from docs/benchmarks.md.
  [ -f "$out/latency.svg" ] && cp "$out/latency.svg" "$results/mixed-latency.svg"
  kill "$server_pid" "$sandbox_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  {
    echo "# Mixed traffic: browse, carts and checkouts together"
    echo
    machine_header
    echo "- load average (1/5/15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- \`emporium serve\` (fresh data directory, rate limits off, log level warn) with payments.psp_url at \`emporium psp-sandbox\` on the same host"
    echo "- \`emporium loadgen --scenario mixed --mix $mix\`: $concurrency connections, closed loop, 3 s warm-up, ${seconds} s measured; per loop a browse request (Zipf product pages, lists, searches), a cart's life (create, 1-3 lines, update, remove, read, abandon) or a checkout (\`Prefer: wait=10\`), picked by weight"
    echo "- audit: the server's invariant audit (POST /api/v1/admin/audit) after the run, once every order settled"
    echo
    python3 - "$out/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
s = report["scenario_summary"]
lat = report["latency"]
print("| req/s | p50 | p99 | errors | carts/s | confirmed orders/s | audit |")
print("|---:|---:|---:|---:|---:|---:|---|")
cart = s.get("cart") or {}
checkout = s.get("checkout") or {}
audit = (report.get("audit") or {}).get("verdict", "not run")
print(f"| {report['throughput_per_second']:.0f} | {lat['p50_us'] / 1000:.2f} ms | {lat['p99_us'] / 1000:.2f} ms | "
      f"{report['errors']} | {cart.get('carts_per_second', 0):.1f} | {checkout.get('confirmed_per_second', 0):.1f} | {audit} |")
print()
print("| kind | loops | requests | ok | rejected | errors |")
print("|---|---:|---:|---:|---:|---:|")
for kind, k in s["kinds"].items():
    print(f"| {kind} | {k['loops']} | {k['requests']} | {k['ok']} | {k['rejected']} | {k['errors']} |")
PY
  } | tee "$report"
}

# HTTP flash sale: 256 connections race to reserve 1 unit each of one SKU stocked with
# FLASH_STOCK units (default 1,000) through POST /api/v1/inventory/reservations on
# `emporium serve`; successes must equal the stock exactly. FLASH_SECONDS (default 10).
bench_flash_sale() {
  local emporium="$build_dir/src/app/emporium"
  [ -x "$emporium" ] || { echo "bench: $emporium missing"; return 0; }
  local seconds="${FLASH_SECONDS:-10}" stock="${FLASH_STOCK:-1000}" concurrency=256
  local admin_key="bench-admin-key" report="$results/flash_sale.md" out="$work/flash"
  local port server_pid
  start_shop_server flash "$work/flash-data" || return 1
  "$emporium" loadgen --url "http://127.0.0.1:$port" --scenario flash-sale --sku FLASH-BENCH-1 \
    --stock "$stock" --admin-key "$admin_key" --concurrency "$concurrency" \
    --duration "${seconds}s" --warmup 0s --timeout 15s --no-progress --out "$out" \
    | tee "$work/flash.txt" || true
  [ -f "$out/latency.svg" ] && cp "$out/latency.svg" "$results/flash_sale-latency.svg"
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  {
    echo "# Inventory over HTTP: a flash sale at $concurrency connections"
    echo
    machine_header
    echo "- load average (1/5/15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- \`emporium serve\` (fresh data directory, rate limits off, log level warn); \`emporium loadgen --scenario flash-sale\`: $concurrency connections, closed loop, ${seconds} s, each request reserves 1 unit of one SKU stocked with $stock units (POST /api/v1/inventory/reservations, ops staff key, unique Idempotency-Key); 201 = sold, 409 = sold out"
    echo
    python3 - "$out/report.json" "$stock" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
s = report["scenario_summary"]
lat = report["latency"]
stock = int(sys.argv[2])
print("| requests/s | p50 | p99 | sold | stock | sold == stock | sold out (409) | errors | audit |")
print("|---:|---:|---:|---:|---:|---|---:|---:|---|")
audit = (report.get("audit") or {}).get("verdict", "not run")
print(f"| {report['throughput_per_second']:.0f} | {lat['p50_us'] / 1000:.2f} ms | {lat['p99_us'] / 1000:.2f} ms | "
      f"{s['sold']} | {stock} | {'yes' if s['sold'] == stock else 'NO'} | {s['sold_out']} | {report['errors']} | {audit} |")
PY
  } | tee "$report"
}

for scenario in "${scenarios[@]}"; do
  "bench_$scenario"
done
