#!/usr/bin/env bash
# Installs what coemu needs on Debian 12, non-interactively; does nothing (fast)
# when every package is already there. Called by tools/test.sh and tools/demo.sh.
set -euo pipefail

packages=(
  cmake g++ make pkg-config ninja-build
  libpcap-dev libnl-3-dev libnl-route-3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev libyaml-cpp-dev libexpected-dev
  liburing-dev libboost-dev
  clang libclang-rt-dev
  iproute2 tcpdump tshark python3 gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  # dpkg-query is cheap; an installed package prints "install ok installed".
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "deps: missing packages (${missing[*]}) and not root; install them and retry" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer "no" ahead of time.
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
