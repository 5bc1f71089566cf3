#!/bin/bash
# stop 39: selftrain_atlas with --area-guard, paired validation, seeds 100-109, two queues (one per core)
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench39
cd /work/bench39
run() { python examples/fewlabels_benchmark.py --seeds $1 --ks 5,10 --arms classical,selftrain_atlas --eval-split val --split-layout paired --gvae-iterations 500 --seg-iterations 1200 --area-guard --output-dir runs/guard/s$1 > runs/guard_s$1.out 2>&1; echo "s$1 done $(date -u +%H:%M)" >> runs/done.txt; }
mkdir -p runs
(for s in 100 102 104 106 108; do run $s; done) &
(for s in 101 103 105 107 109; do run $s; done) &
wait
