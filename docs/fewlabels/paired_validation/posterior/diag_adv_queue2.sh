#!/bin/bash
# stop 38 diagnostic, second: adv 0.1 drew a dot lattice (nearest upsampling); bilinear upsampling, adv 0.03
cd /work/bench38/runs/diag
. /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench38 DIAG_CACHE=/work/bench38/runs/diag/cache
P=/work/bench38/docs/fewlabels/paired_validation/posterior/posterior_diag.py
DIAG_SETTINGS='{"condition_mode": "spade", "critic_head": "patch", "adv_weight": 0.03, "upsample": "linear"}' python $P 101 5 500 0.02 > diag_101_5_spade_patch_adv0.03_linear.txt 2>&1
echo done adv2 $(date +%H:%M) >> done.txt
