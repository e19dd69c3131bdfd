#!/usr/bin/env bash
# Checks that the model library (libmedsad_model.a) stands alone, as a machine with only LibTorch
# (a GPU box with a PyTorch install) needs it to: every project symbol its objects use is defined
# in the library itself, and none comes from the image, DICOM, NIfTI, logging, CLI or HTTP
# libraries. Exit 1 with the offending symbols listed, else 0.
#   check_model_library.sh path/to/libmedsad_model.a
set -euo pipefail
lib=${1:?usage: check_model_library.sh LIBRARY}
[[ -f $lib ]] || { echo "check_model_library: $lib: no such file" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Mangled names: "U name" for used, "<addr> <type> name" for defined (types T, W, V, D, B, R, ...).
nm --undefined-only "$lib" | awk '$1 == "U" { print $2 }' | sort -u > "$work/used"
nm --defined-only "$lib" | awk 'NF == 3 { print $3 }' | sort -u > "$work/defined"

status=0
missing=$(grep '6medsad' "$work/used" | comm -23 - "$work/defined" || true)
if [[ -n $missing ]]; then
  echo "check_model_library: $lib uses project code it does not hold:" >&2
  echo "$missing" | c++filt | sed 's/^/  /' >&2
  status=1
fi
foreign=$(c++filt < "$work/used" | grep -E '^(cv::|spdlog::|fmt::|httplib::|CLI::|Dcm|DJ|DiRegister|OF[A-Z]|nifti|znz)' || true)
if [[ -n $foreign ]]; then
  echo "check_model_library: $lib uses a library that a LibTorch-only machine lacks:" >&2
  echo "$foreign" | sed 's/^/  /' >&2
  status=1
fi
exit $status
