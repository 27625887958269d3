"""Prints what a trial process sees: its argv, GRID_ variables, trial JSON, cwd and interpreter."""

import json
import os
import sys

with open(os.environ["GRID_TRIAL"]) as f:
    trial = json.load(f)
print(
    json.dumps(
        {
            "argv": sys.argv[1:],
            "lr": os.environ.get("GRID_LR"),
            "tag": os.environ.get("GRID_TAG"),
            "trial_config": trial["config"],
            "trial_id": os.environ["GRID_TRIAL_ID"],
            "cwd": os.getcwd(),
            "python": sys.executable,
            "path0": os.environ["PATH"].split(os.pathsep)[0],
        }
    )
)
print("score: 0.75")
