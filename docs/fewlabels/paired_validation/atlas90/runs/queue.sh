#!/bin/bash
# stop 38: registered pool labels without the worst-fitting tenth (selftrain_atlas --pseudo-keep 0.9), validation
cd /work/bench38
. /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench38
run() {
  s=$1
  python examples/fewlabels_benchmark.py --seeds $s --ks 5,10 --arms classical,selftrain_atlas --eval-split val --split-layout paired --gvae-iterations 500 --seg-iterations 1200 --pseudo-keep 0.9 --output-dir runs/atlas90/s$s > runs/atlas90/log_s$s.txt 2>&1
  echo "seed $s done $(date +%H:%M) rc $?" >> runs/atlas90/done.txt
}
export -f run
printf "%s\n" 100 101 102 103 104 105 106 107 108 109 | xargs -P 2 -I{} bash -c 'run {}'
