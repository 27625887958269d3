"""A script that resumes from its checkpoint: it counts steps into $GRID_TRIAL_DIR/step.txt and
starts from $GRID_PREVIOUS_TRIAL_DIR/step.txt when an earlier attempt left one. The first attempt
fails after step 3 (as one cut off by a lost node or a timeout would stop)."""

import os
from pathlib import Path

previous = os.environ.get("GRID_PREVIOUS_TRIAL_DIR")
start = int(Path(previous, "ckpt", "step.txt").read_text()) if previous else 0
own = Path(os.environ["GRID_TRIAL_DIR"], "ckpt")
own.mkdir()
for step in range(start + 1, 6):
    (own / "step.txt").write_text(str(step))
    if step == 3 and not previous:
        raise SystemExit("stopped at step 3")
print(f"resumed from {start}, finished at step 5")
