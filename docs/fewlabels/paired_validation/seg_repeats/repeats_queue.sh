#!/bin/bash
# stop 45: the segmenter's chaos within a seed: --seg-repeats 3, paired val, seeds 100 and 101, one process each
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench45r PATH=/work/main/.venv/bin:$PATH
cd /work/bench45r
mkdir -p runs/repeats
for s in 100 101; do
  (python examples/fewlabels_benchmark.py --seeds $s --ks 5,10 --arms classical,selftrain,cond_pseudo --eval-split val --split-layout paired --gvae-iterations 500 --seg-iterations 1200 --pseudo-keep 0.5 --seg-repeats 3 --output-dir runs/repeats/s$s > runs/repeats/s$s.log 2>&1; echo "s$s done $(date -u +%H:%M)" >> runs/repeats/done.txt) &
done
wait
