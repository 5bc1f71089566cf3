#!/bin/bash
# stop 44: render realism against the GVAE's budget, k = 10, seeds 100 and 101, one process each
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench44r PATH=/work/main/.venv/bin:$PATH
cd /work/bench44r
mkdir -p runs
for s in 100 101; do
  (python docs/fewlabels/diagnostics/render_realism/render_realism.py $s 10 8000 250,500,1000,2000,4000,8000 > runs/realism_s${s}_k10.txt 2>&1; echo "s$s done $(date -u +%H:%M)" >> runs/done.txt) &
done
wait
