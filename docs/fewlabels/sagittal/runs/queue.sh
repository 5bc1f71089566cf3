#!/bin/bash
# one process per core: this script's seeds run one after another, k = 10 first, then k = 5
cd /work/bench42
. /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench42
for S in "$@"; do
  python examples/fewlabels_benchmark.py --data-dir /tmp/colin27 --axis 0 --seeds $S --ks 10 \
    --arms classical,selftrain,selftrain_atlas,cond_pseudo --area-guard --gvae-iterations 500 --seg-iterations 1200 \
    --output-dir runs/sag42/s$S > runs/sag42/log_s$S.txt 2>&1
done
for S in "$@"; do
  python examples/fewlabels_benchmark.py --data-dir /tmp/colin27 --axis 0 --seeds $S --ks 5 \
    --arms classical,selftrain,selftrain_atlas,cond_pseudo --area-guard --gvae-iterations 500 --seg-iterations 1200 \
    --output-dir runs/sag42k5/s$S > runs/sag42k5/log_s$S.txt 2>&1
done
