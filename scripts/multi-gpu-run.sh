#!/usr/bin/env bash
# Run a multi-GPU spec on a GPU machine with one command, then write its report.
#   here:  scripts/offline-bundle.sh          (once, for a machine without a package index: .offline-bundle/)
#   there: scripts/multi-gpu-run.sh specs/h200x8-shootout.yaml docs/results/h200x8 [GRID_ARGS...]
# Re-running resumes: finished trials are skipped, so a run cut off by the 10-minute call limit
# continues where it stopped when the results folder is carried back.
set -euo pipefail
spec=${1:?usage: scripts/multi-gpu-run.sh SPEC OUT_DIR [grid run args...]}
out=${2:?usage: scripts/multi-gpu-run.sh SPEC OUT_DIR [grid run args...]}
shift 2
cd "$(dirname "$0")/.."
# A GPU machine without ray or keras takes them from the bundle (scripts/offline-bundle.sh).
for bundle in .offline-bundle .gpu-bundle; do
  if ! python3 -c "import ray, keras" 2>/dev/null && [ -f "$bundle/setup.sh" ]; then source "$bundle/setup.sh"; fi
done
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
# NVLink multicast off for every process we start (also set in the spec's env for the trials).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
need=$(python3 - "$spec" <<'PY'
import sys, yaml
print(max(yaml.safe_load(open(sys.argv[1]))["axes"].get("gpus", [1])))
PY
)
have=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
if [ "$have" -lt "$need" ]; then
  echo "this spec needs $need GPUs on one node; this machine has $have" >&2
  exit 2
fi
mkdir -p "$out"
nvidia-smi > "$out/env.txt" 2>&1 || true
python3 -m pip list 2>/dev/null | grep -iE '^(jax|jaxlib|torch|keras|ray|numpy|pyarrow|nvidia-ml-py) ' >> "$out/env.txt" || true
status=0
python3 -m grid run "$spec" --results "$out/results" --plain "$@" || status=$?
python3 -m grid report "$out/results" --out "$out/report" || true
if [ -n "${OUT:-}" ]; then tar czf "$OUT/$(basename "$out").tgz" "$out"; fi
exit $status
