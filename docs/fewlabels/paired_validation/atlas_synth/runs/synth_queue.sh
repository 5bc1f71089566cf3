#!/bin/bash
# stop 44: atlas_synth (registered synthesis) with --area-guard, paired validation, seeds 100-103, two queues (one per core)
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench44 PATH=/work/main/.venv/bin:$PATH
cd /work/bench44
run() { python examples/fewlabels_benchmark.py --seeds $1 --ks 5,10 --arms classical,selftrain_atlas,atlas_synth --eval-split val --split-layout paired --gvae-iterations 500 --seg-iterations 1200 --area-guard --output-dir runs/synth/s$1 > runs/synth_s$1.out 2>&1; echo "s$1 done $(date -u +%H:%M)" >> runs/done.txt; }
mkdir -p runs
(for s in 100 102; do run $s; done) &
(for s in 101 103; do run $s; done) &
wait
