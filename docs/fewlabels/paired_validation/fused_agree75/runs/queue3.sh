#!/bin/bash
# a 4-seed screen (after the verdicts): registered maps (atlas weight 1) on the 75 % of the pool where segmenter and registration agree most
cd /work/bench37
. /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench37
run() {
  s=$1
  python examples/fewlabels_benchmark.py --seeds $s --ks 5,10 --arms classical,selftrain_fused --eval-split val --split-layout paired --gvae-iterations 500 --seg-iterations 1200 --atlas-weight 1.0 --pseudo-keep 0.75 --output-dir runs/agree/s$s > runs/agree/log_s$s.txt 2>&1
  echo "seed $s done $(date +%H:%M) rc $?" >> runs/agree/done.txt
}
export -f run
printf "%s\n" 100 101 102 103 | xargs -P 2 -I{} bash -c 'run {}'
