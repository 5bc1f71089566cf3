#!/bin/bash
# stop 46: the stop-45 chaos command (--seg-repeats 3, paired val, seeds 100 and 101) with --seg-lr-schedule poly
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench46 PATH=/work/main/.venv/bin:$PATH
cd /work/bench46
mkdir -p runs/poly
for s in 100 101; do
  (python examples/fewlabels_benchmark.py --seeds $s --ks 5,10 --arms classical,selftrain,cond_pseudo --eval-split val --split-layout paired --gvae-iterations 500 --seg-iterations 1200 --pseudo-keep 0.5 --seg-repeats 3 --seg-lr-schedule poly --output-dir runs/poly/s$s > runs/poly/s$s.log 2>&1; echo "s$s done $(date -u +%H:%M)" >> runs/poly/done.txt) &
done
wait
