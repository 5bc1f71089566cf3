#!/bin/bash
# stop 45: --synthetic-intensity sharpen (the screen's choice) on the paired validation slabs, seeds 100-103, two processes
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench45v PATH=/work/main/.venv/bin:$PATH
cd /work/bench45v
mkdir -p runs/sharpen
for pair in "100 102" "101 103"; do
  (for s in $pair; do
     python examples/fewlabels_benchmark.py --seeds $s --ks 5,10 --arms classical,selftrain,cond_pseudo --eval-split val --split-layout paired --gvae-iterations 500 --seg-iterations 1200 --pseudo-keep 0.5 --synthetic-intensity sharpen --output-dir runs/sharpen/s$s > runs/sharpen/s$s.log 2>&1
     echo "s$s done $(date -u +%H:%M)" >> runs/sharpen/done.txt
   done) &
done
wait
