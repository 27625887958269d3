#!/usr/bin/env bash
# Issue 13's before/after on a lent GPU machine, in one device call: a spec (default
# specs/overhead-defaults-gpu.yaml) run by the previous code (a plain copy in old-code/: `git archive
# COMMIT grid tasks scripts | tar -x -C old-code`), then by this code, each with its own state
# folder so that each compiles cold once; then GPU tests (default: the warm-start ones; "" for none).
# Everything lands in OUT_DIR (default docs/results/overhead-after/) and, on the device machine, in
# $OUT/<OUT_DIR's name>.tgz.
#   run(command="scripts/overhead-before-after.sh [SPEC] [OUT_DIR] [TESTS]", carry=[".gpu-bundle", "old-code"])
# (old-code/ is git-ignored, so it travels only when carried)
set -uo pipefail
cd "$(dirname "$0")/.."
source .gpu-bundle/setup.sh
export PYTHONUNBUFFERED=1
spec=$PWD/${1:-specs/overhead-defaults-gpu.yaml}
out=$PWD/${2:-docs/results/overhead-after}
tests=${3-tests/test_warm_start.py tests/test_nvml.py tests/test_compile_cache.py tests/test_isolate.py}
mkdir -p "$out"
(cd old-code && OUT= timeout 230 scripts/multi-gpu-run.sh "$spec" "$out/before" --state-dir /tmp/state-before) > "$out/before.log" 2>&1
echo "before: exit $?" | tee -a "$out/before.log"
OUT= timeout 230 scripts/multi-gpu-run.sh "$spec" "$out/after" --state-dir /tmp/state-after > "$out/after.log" 2>&1
echo "after: exit $?" | tee -a "$out/after.log"
if [ -n "$tests" ]; then
  # shellcheck disable=SC2086  # a list of test files
  PYTHONPATH=$PWD:$PYTHONPATH timeout 110 python3 -m pytest -q -p no:cacheprovider $tests > "$out/gpu-tests.log" 2>&1
  echo "gpu tests: exit $?" | tee -a "$out/gpu-tests.log"
  tail -3 "$out/gpu-tests.log"
fi
if [ -n "${OUT:-}" ]; then tar czf "$OUT/$(basename "$out").tgz" -C "$(dirname "$out")" "$(basename "$out")"; fi
