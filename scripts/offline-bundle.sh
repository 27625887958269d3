#!/usr/bin/env bash
# Wheels for a machine without a package index (an air-gapped GPU box), built on one that has one.
#
#   scripts/offline-bundle.sh [--python 3.12] [--out .offline-bundle] [PACKAGE ...]
#
# Downloads, for CPython --python on manylinux x86_64 (default: the version running this script):
#   - keras and ray's small dependencies, and any PACKAGE given (e.g. lightning transformers);
#   - ray as a tar.xz without its Java jars (the wheel is ~79 MB, the repack ~33 MB);
#   - setup.sh: on the target, `source <out>/setup.sh` installs them into /tmp/site (no index, no
#     dependency resolution) and puts them first on PYTHONPATH and PATH.
# The target is expected to have the frameworks it runs (torch, jax, tensorflow) and gpu-grid's
# other dependencies (pyarrow, nvidia-ml-py, pyyaml, rich, psutil, pandas, matplotlib); name any it
# lacks as PACKAGEs. Pin versions with RAY_VERSION and KERAS_VERSION.
set -euo pipefail
py=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
out=.offline-bundle
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --python) py=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) extra+=("$1"); shift ;;
  esac
done
RAY_VERSION=${RAY_VERSION:-2.60.0}
KERAS_VERSION=${KERAS_VERSION:-3.15.1}
mkdir -p "$out"
pipdl() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$1" "${@:2}"
}
pipdl "$out" "keras==$KERAS_VERSION" namex optree jsonschema jsonschema-specifications referencing rpds-py ${extra[@]+"${extra[@]}"}
if [ ! -f "$out/ray-$RAY_VERSION.tar.xz" ]; then
  tmp=$(mktemp -d)
  pipdl "$tmp" "ray==$RAY_VERSION"
  (cd "$tmp" && mkdir u && cd u && unzip -q ../ray-*.whl && rm -rf ray/jars && tar -cf - . | xz -T0 -6 > ../ray.tar.xz)
  mv "$tmp/ray.tar.xz" "$out/ray-$RAY_VERSION.tar.xz"
  rm -rf "$tmp"
fi
cat > "$out/setup.sh" <<'SETUP'
# On the target machine: source <bundle>/setup.sh   (installs into /tmp/site, sets PYTHONPATH and PATH)
_b=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -f /tmp/site/.done ]; then
  mkdir -p /tmp/site
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$_b"/*.whl
  tar -xJf "$_b"/ray-*.tar.xz -C /tmp/site
  touch /tmp/site/.done
fi
export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
export PATH=/tmp/site/bin:$PATH
SETUP
du -sh "$out"
echo "copy $out to the target, then: source $out/setup.sh"
