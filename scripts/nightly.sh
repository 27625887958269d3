#!/usr/bin/env bash
# Nightly regression check: run the nightly spec into a fresh results folder, judge it against a
# history of accepted runs (the baseline), and write its report with the verdict on top. The exit
# status is `grid compare`'s: 0 no regression, 1 regression (confirmed by re-running just the
# flagged configs CONFIRM times), 2 usage or data error, 3 incomplete: configs of the baseline
# missing from the run, 6 noisy: the noise of some config is wider than the threshold, nothing
# stood out (any other: the run itself failed). Settings (defaults):
#   SPEC=specs/nightly.yaml   BASELINE=baselines/nightly   RUNS=nightly   GRID=.venv/bin/grid
#   METRIC=steady_epoch_s     THRESHOLD=5%    HISTORY=10    CONFIRM=1     GRID_ARGS= (extra `grid run` flags)
# Each run goes to $RUNS/<UTC timestamp>/{results,report/index.html,report/history/*.png,verdict.json};
# $RUNS/latest points to the newest. A complete night whose trials all ended ok and whose verdict is
# ok or noisy joins the history (the newest HISTORY are kept); the first night starts it (exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."

SPEC=${SPEC:-specs/nightly.yaml}
BASELINE=${BASELINE:-baselines/nightly}
RUNS=${RUNS:-nightly}
GRID=${GRID:-.venv/bin/grid}
METRIC=${METRIC:-steady_epoch_s}
THRESHOLD=${THRESHOLD:-5%}
HISTORY=${HISTORY:-10}
CONFIRM=${CONFIRM:-1}
GRID_ARGS=${GRID_ARGS:-}

run="$RUNS/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$run"
ln -sfn "$(basename "$run")" "$RUNS/latest"
echo "nightly: running $SPEC into $run/results"
# shellcheck disable=SC2086  # GRID_ARGS is a list of flags
"$GRID" run "$SPEC" --results "$run/results" --plain $GRID_ARGS

status=0
# shellcheck disable=SC2086  # GRID_ARGS is a list of flags: the confirming re-runs run as the night did
"$GRID" compare "$BASELINE" "$run/results" --metric "$METRIC" --threshold "$THRESHOLD" --history "$HISTORY" \
  --accept --confirm "$CONFIRM" --spec "$SPEC" $GRID_ARGS --out "$run/report/history" \
  --json "$run/verdict.json" || status=$?
# The report, with the verdict on top (each config's, the night its history moved, the plot) where
# compare could give one; a report that cannot be written does not change the night's exit status.
verdict=()
[ -f "$run/verdict.json" ] && verdict=(--verdict "$run/verdict.json")
"$GRID" report "$run/results" --out "$run/report" ${verdict[@]+"${verdict[@]}"} \
  || echo "nightly: the report could not be written (grid report exit $?)"
case $status in
  0) echo "nightly: no regression against $BASELINE; report $run/report/index.html" ;;
  1) echo "nightly: REGRESSION against $BASELINE (confirmed): see $run/verdict.json and $run/report/history" ;;
  3) echo "nightly: INCOMPLETE: this run lacks configs of $BASELINE: see $run/verdict.json" ;;
  6) echo "nightly: NOISY: the noise of some configs is wider than $THRESHOLD: see $run/verdict.json" ;;
  *) echo "nightly: compare could not decide (exit $status)" ;;
esac
exit "$status"
