#!/bin/bash
# stop 45: the same command without --synthetic-intensity, seeds 100-101 (pairs the change within this VM), after the validation
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench45v PATH=/work/main/.venv/bin:$PATH
cd /work/bench45v
while [ "$(wc -l < runs/sharpen/done.txt 2>/dev/null || echo 0)" -lt 4 ]; do sleep 20; done
mkdir -p runs/untreated
for s in 100 101; do
  (python examples/fewlabels_benchmark.py --seeds $s --ks 5,10 --arms classical,selftrain,cond_pseudo --eval-split val --split-layout paired --gvae-iterations 500 --seg-iterations 1200 --pseudo-keep 0.5 --output-dir runs/untreated/s$s > runs/untreated/s$s.log 2>&1; echo "s$s done $(date -u +%H:%M)" >> runs/untreated/done.txt) &
done
wait
