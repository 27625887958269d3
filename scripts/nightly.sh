#!/usr/bin/env bash
# Nightly regression check: run the nightly spec into a fresh results folder, write its report,
# and compare it with the stored baseline. The exit status is `grid compare`'s: 0 no regression,
# 1 regression, 2 usage or data error, 3 incomplete: configs of the baseline missing from the run
# (any other: the run itself failed). Settings (defaults):
#   SPEC=specs/nightly.yaml   BASELINE=baselines/nightly   RUNS=nightly   GRID=.venv/bin/grid
#   METRIC=steady_epoch_s     THRESHOLD=5%                 GRID_ARGS=     (extra `grid run` flags)
# Each run goes to $RUNS/<UTC timestamp>/{results,report/index.html,verdict.json}; $RUNS/latest
# points to the newest. With no baseline yet, this run becomes the baseline (exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."

SPEC=${SPEC:-specs/nightly.yaml}
BASELINE=${BASELINE:-baselines/nightly}
RUNS=${RUNS:-nightly}
GRID=${GRID:-.venv/bin/grid}
METRIC=${METRIC:-steady_epoch_s}
THRESHOLD=${THRESHOLD:-5%}
GRID_ARGS=${GRID_ARGS:-}

run="$RUNS/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$run"
ln -sfn "$(basename "$run")" "$RUNS/latest"
echo "nightly: running $SPEC into $run/results"
# shellcheck disable=SC2086  # GRID_ARGS is a list of flags
"$GRID" run "$SPEC" --results "$run/results" --plain $GRID_ARGS
"$GRID" report "$run/results" --out "$run/report"

if [[ "$BASELINE" != *://* && ! -d "$BASELINE" ]]; then
  mkdir -p "$(dirname "$BASELINE")"
  cp -r "$run/results" "$BASELINE"
  echo "nightly: no baseline at $BASELINE yet: created it from this run; later runs are compared with it"
  exit 0
fi

status=0
"$GRID" compare "$BASELINE" "$run/results" --metric "$METRIC" --threshold "$THRESHOLD" \
  --json "$run/verdict.json" || status=$?
case $status in
  0) echo "nightly: no regression against $BASELINE; report $run/report/index.html" ;;
  1) echo "nightly: REGRESSION against $BASELINE: see $run/verdict.json and $run/report/index.html" ;;
  3) echo "nightly: INCOMPLETE: this run lacks configs of $BASELINE: see $run/verdict.json" ;;
  *) echo "nightly: compare could not decide (exit $status)" ;;
esac
exit "$status"
