#!/bin/bash
# stop 39: test run of selftrain_atlas --area-guard at k = 10 (recorded test protocol: alternate layout, segmenter
# 1200, whole pool), seeds 0-7, two queues (one per core). Started only if the validation rule passed.
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench39
cd /work/bench39
run() { python examples/fewlabels_benchmark.py --seeds $1 --ks ${KS:-10} --arms classical,selftrain_atlas --seg-iterations 1200 --area-guard --output-dir runs/guardtest/s$1 > runs/guardtest_s$1.out 2>&1; echo "test s$1 done $(date -u +%H:%M)" >> runs/done.txt; }
(for s in 0 2 4 6; do run $s; done) &
(for s in 1 3 5 7; do run $s; done) &
wait
