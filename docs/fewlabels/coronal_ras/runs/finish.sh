#!/bin/bash
# merge the per-seed runs of one k and write the paired differences: finish.sh cor41|cor41k5
set -e
cd /work/bench41
. /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1 PYTHONPATH=/work/bench41
D=runs/$1
python examples/fewlabels_benchmark.py --merge $(ls -d $D/s[0-9] | sort) --output-dir $D/main --overwrite > $D/merge.log 2>&1
python /work/main/docs/fewlabels/diagnostics/paired_arms.py $D/main/results.json selftrain_atlas-classical cond_pseudo-classical selftrain-classical selftrain_atlas-selftrain cond_pseudo-selftrain cond_pseudo-selftrain_atlas > $D/paired_arms.txt
