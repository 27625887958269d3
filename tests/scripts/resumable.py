"""A script that resumes from its checkpoint, as Keras BackupAndRestore or Lightning's
ckpt_path="last" do: it counts steps into $GRID_TRIAL_DIR/ckpt/step.txt and starts from the step
found there. The first attempt stops after step 3 (as one cut off by a lost node, Ctrl-C or a
timeout would)."""

import os
from pathlib import Path

ckpt = Path(os.environ["GRID_TRIAL_DIR"], "ckpt", "step.txt")
start = int(ckpt.read_text()) if ckpt.exists() else 0
ckpt.parent.mkdir(exist_ok=True)
for step in range(start + 1, 6):
    ckpt.write_text(str(step))
    if step == 3 and start == 0:
        raise SystemExit("stopped at step 3")
print(f"resumed from {start}, finished at step 5")
