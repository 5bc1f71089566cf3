#!/bin/bash
# The few-label benchmark on a lent GPU machine: --device cuda end to end (--quick, twice: the same figures?), then one
# real cell (seed 100, k = 5, the frozen arms, GVAE 500 / segmenter 1200, paired val) for its times against the CPU's.
# Packages that machine lacks travel as wheels in .whl/ (the list in gpu_checks.sh; SimpleITK is not needed: the
# registration arms are not run). Logs and results under $OUT.
# Locally, without a GPU: LOCAL=1 DEV=cpu OUT=/tmp/out SEG=20 GVAE=10 bash examples/benchmarks/fewlabels_gpu_check.sh
set -o pipefail
cd "$(dirname "$0")/../.."
DEV=${DEV:-cuda}; SEG=${SEG:-1200}; GVAE=${GVAE:-500}
source examples/benchmarks/device_env.sh
rm -rf /tmp/fl_qa /tmp/fl_qb /tmp/fl_cell
for r in a b; do
  timeout 120 python3 examples/fewlabels_benchmark.py --quick --device $DEV --arms classical,selftrain,cond_pseudo \
    --seg-weight 0.5 --output-dir /tmp/fl_q$r > $OUT/quick_$r.log 2>&1; echo "=== quick $r rc=$?"; tail -n 3 $OUT/quick_$r.log
done
python3 -c "
import json
d = [[r['dice'] for r in json.load(open(f'/tmp/fl_q{x}/results.json'))['runs']] for x in 'ab']
print('same figures in both quick runs:', d[0] == d[1], d)"
timeout ${CELL_TIMEOUT:-200} python3 examples/fewlabels_benchmark.py --seeds 100 --ks 5 --arms classical,selftrain,cond_pseudo \
  --eval-split val --split-layout paired --gvae-iterations $GVAE --seg-iterations $SEG --pseudo-keep 0.5 --device $DEV \
  --output-dir /tmp/fl_cell 2>&1 | tee $OUT/cell.log; echo "=== cell rc=$?"
cp /tmp/fl_cell/results.json /tmp/fl_cell/results.md /tmp/fl_cell/samples_k5_cond_pseudo.png $OUT/ 2>/dev/null
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null
