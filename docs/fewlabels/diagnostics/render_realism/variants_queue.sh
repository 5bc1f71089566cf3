#!/bin/bash
# stop 44: render realism of two generator variants, k = 10, seed 100, 2000 iterations, one process each
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench44r PATH=/work/main/.venv/bin:$PATH
cd /work/bench44r
for v in sharper cotrained; do
  (python docs/fewlabels/diagnostics/render_realism/render_realism.py 100 10 2000 250,500,1000,2000 1200 $v > runs/realism_s100_k10_$v.txt 2>&1; echo "$v done $(date -u +%H:%M)" >> runs/done.txt) &
done
wait
