#!/bin/bash
# two queues, one per core: python synthetic_atlases.py SEED K for seeds 100-103, k = 5 and 10 (as run at stop 39,
# which stopped it after seeds 100-101; the recorded run wrote the PNGs to /work/runs39). Run from the repository root.
D=docs/fewlabels/diagnostics/synthetic_atlases
export OMP_NUM_THREADS=1
mkdir -p runs/synthetic_atlases
(for s in 100 101 102 103; do python $D/synthetic_atlases.py $s 5 runs/synthetic_atlases/atlases_s${s}_k5.png > $D/out_s${s}_k5.txt 2>&1; done) &
(for s in 100 101 102 103; do python $D/synthetic_atlases.py $s 10 runs/synthetic_atlases/atlases_s${s}_k10.png > $D/out_s${s}_k10.txt 2>&1; done) &
wait
