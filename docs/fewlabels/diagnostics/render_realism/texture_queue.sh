#!/bin/bash
# stop 45: render texture screen, k = 10, seeds 100 and 101, one process each
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench45 PATH=/work/main/.venv/bin:$PATH
cd /work/bench45
mkdir -p runs
for s in 100 101; do
  (python docs/fewlabels/diagnostics/render_realism/render_texture.py $s 10 > runs/texture_s${s}_k10.txt 2>&1; echo "s$s done $(date -u +%H:%M)" >> runs/done.txt) &
done
wait
