#!/bin/bash
# stop 38 diagnostic: does a much higher adversarial weight sharpen the conditional renders (seed 101, k = 5)?
cd /work/bench38/runs/diag
. /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench38 DIAG_CACHE=/work/bench38/runs/diag/cache
P=/work/bench38/docs/fewlabels/paired_validation/posterior/posterior_diag.py
DIAG_SETTINGS='{"condition_mode": "spade", "critic_head": "patch", "adv_weight": 0.1}' python $P 101 5 500 0.02 > diag_101_5_spade_patch_adv0.1.txt 2>&1
# (stopped at 12:02, unread, after the adv 0.1 output above showed a dot lattice):
DIAG_SETTINGS='{"condition_mode": "spade", "critic_head": "patch", "adv_weight": 1.0}' python $P 101 5 500 0.02 > diag_101_5_spade_patch_adv1.txt 2>&1
echo done $(date +%H:%M) >> done.txt
