#!/usr/bin/env bash
# Installs the Debian packages Emporium needs, and only those that are missing.
# Idempotent: a second run installs nothing and takes well under a second.
# Usage: scripts/install-deps.sh [build|test|bench|all]   (default: build)
set -euo pipefail

profile="${1:-build}"

build_packages=(
  build-essential cmake ninja-build ccache pkg-config git curl ca-certificates
  libboost-dev libsqlite3-dev libabsl-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libcli11-dev libtomlplusplus-dev libssl-dev libsodium-dev libargon2-dev
  libgtest-dev libgmock-dev libbenchmark-dev libxapian-dev libyaml-cpp-dev
  libgoogle-perftools-dev
)
test_packages=(sqlite3 procps psmisc)
bench_packages=(wrk nginx-light)

wanted=("${build_packages[@]}")
case "$profile" in
  build) ;;
  test) wanted+=("${test_packages[@]}") ;;
  bench) wanted+=("${test_packages[@]}" "${bench_packages[@]}") ;;
  all) wanted+=("${test_packages[@]}" "${bench_packages[@]}") ;;
  *) echo "unknown profile: $profile" >&2; exit 2 ;;
esac

missing=()
for package in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
