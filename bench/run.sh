#!/usr/bin/env bash
# make bench: runs every benchmark against a Release build and writes bench/results/*.md.
# Figures are printed and recorded; nothing here passes or fails on timing.
# Usage: bench/run.sh <release build dir> [scenario ...]   (default: all scenarios)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${1:-build/release}"
shift || true
scenarios=("$@")
[ "${#scenarios[@]}" -gt 0 ] || scenarios=(http group_commit inventory payments)
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

# wrk_run NAME URL -> prints "req/s p50 p99" from a 2-thread, 64-connection, 15 s run.
wrk_run() {
  local out="$work/wrk-$1.txt"
  wrk -t2 -c64 -d"${WRK_SECONDS:-15}"s --latency "$2" >"$out"
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
}

bench_payments() {
  local binary="$build_dir/src/tools/psp_sandbox/payments_bench"
  [ -x "$binary" ] || { echo "bench: payments_bench not built yet"; return 0; }
  "$binary" "$results/payments.md" --seconds "${PAYMENTS_SECONDS:-10}" --concurrency 64
}

for scenario in "${scenarios[@]}"; do
  "bench_$scenario"
done
