#!/usr/bin/env bash
# Installs every Debian package medsad needs to build, test and run its demo.
# Idempotent: runs apt-get only when a package is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread        # LibTorch CPU + the fast BLAS it must pick up
  libopencv-dev libicu-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev zlib1g-dev libssl-dev
  libnifti-dev mricron-data               # NIfTI volumes; the Colin27 T1 the lesion benchmark is made from
  python3 python3-torch python3-numpy python3-pil python3-regex  # independent references (tests/, bench/)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
