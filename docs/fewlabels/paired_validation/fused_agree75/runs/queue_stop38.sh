#!/bin/bash
# stop 38: seeds 104-109 of the slice-level guard (registered maps, atlas weight 1, on the 75 % most-agreed pool slices)
cd /work/bench38
. /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench38
run() {
  s=$1
  python examples/fewlabels_benchmark.py --seeds $s --ks 5,10 --arms classical,selftrain_fused --eval-split val --split-layout paired --gvae-iterations 500 --seg-iterations 1200 --atlas-weight 1.0 --pseudo-keep 0.75 --output-dir runs/agree/s$s > runs/agree/log_s$s.txt 2>&1
  echo "seed $s done $(date +%H:%M) rc $?" >> runs/agree/done.txt
}
export -f run
printf "%s\n" 104 105 106 107 108 109 | xargs -P 2 -I{} bash -c 'run {}'
