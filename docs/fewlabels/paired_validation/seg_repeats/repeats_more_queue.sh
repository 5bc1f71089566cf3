#!/bin/bash
# stop 46: the stop-45 chaos command (constant lr, --seg-repeats 3, paired val) on two more seeds, 102 and 103
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench46 PATH=/work/main/.venv/bin:$PATH
cd /work/bench46
mkdir -p runs/repeats
for s in 102 103; do
  (python examples/fewlabels_benchmark.py --seeds $s --ks 5,10 --arms classical,selftrain,cond_pseudo --eval-split val --split-layout paired --gvae-iterations 500 --seg-iterations 1200 --pseudo-keep 0.5 --seg-repeats 3 --output-dir runs/repeats/s$s > runs/repeats/s$s.log 2>&1; echo "s$s done $(date -u +%H:%M)" >> runs/repeats/done.txt) &
done
wait
