#!/bin/bash
# validation of the fused control, seeds 104-109 (the GVAE arm dropped by the screen after seeds 100-103), two processes
cd /work/bench37
. /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench37
run() {
  s=$1
  python examples/fewlabels_benchmark.py --seeds $s --ks 5,10 --arms classical,selftrain_fused --eval-split val --split-layout paired --gvae-iterations 500 --seg-iterations 1200 --output-dir runs/fused/s$s > runs/fused/log_s$s.txt 2>&1
  echo "seed $s done $(date +%H:%M) rc $?" >> runs/fused/done.txt
}
export -f run
printf "%s\n" 104 105 106 107 108 109 | xargs -P 2 -I{} bash -c 'run {}'
