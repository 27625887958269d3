#!/usr/bin/env bash
# Issue 13's before/after on one lent GPU, in one device call: specs/overhead-defaults-gpu.yaml run
# by the previous code (a plain copy in old-code/: `git archive COMMIT grid tasks scripts | tar -x
# -C old-code`), then by this code, each with its own state folder so that each compiles cold once;
# then the warm-start GPU tests. Everything lands in docs/results/overhead-after/ and, on the device
# machine, in $OUT/overhead-after.tgz.
#   run(command="scripts/overhead-before-after.sh", carry=[".gpu-bundle"])
set -uo pipefail
cd "$(dirname "$0")/.."
source .gpu-bundle/setup.sh
export PYTHONUNBUFFERED=1
out=$PWD/docs/results/overhead-after
spec=$PWD/specs/overhead-defaults-gpu.yaml
mkdir -p "$out"
(cd old-code && OUT= timeout 230 scripts/multi-gpu-run.sh "$spec" "$out/before" --state-dir /tmp/state-before) > "$out/before.log" 2>&1
echo "before: exit $?" | tee -a "$out/before.log"
OUT= timeout 230 scripts/multi-gpu-run.sh "$spec" "$out/after" --state-dir /tmp/state-after > "$out/after.log" 2>&1
echo "after: exit $?" | tee -a "$out/after.log"
PYTHONPATH=$PWD:$PYTHONPATH timeout 110 python3 -m pytest -q -p no:cacheprovider tests/test_warm_start.py tests/test_nvml.py \
  tests/test_compile_cache.py tests/test_isolate.py > "$out/gpu-tests.log" 2>&1
echo "gpu tests: exit $?" | tee -a "$out/gpu-tests.log"
tail -3 "$out/gpu-tests.log"
if [ -n "${OUT:-}" ]; then tar czf "$OUT/overhead-after.tgz" -C "$PWD" docs/results/overhead-after; fi
