#!/bin/bash
# merge the per-seed runs of one k and write the paired differences: finish.sh sag42|sag42k5
# (merged with the package at /work/main, whose report names the classical arm's augmentation as it ran: no flip)
set -e
cd /work/bench42
. /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1 PYTHONPATH=/work/main
D=runs/$1
python /work/main/examples/fewlabels_benchmark.py --merge $(ls -d $D/s[0-9] | sort) --output-dir $D/main --overwrite > $D/merge.log 2>&1
python /work/main/docs/fewlabels/diagnostics/paired_arms.py $D/main/results.json selftrain_atlas-classical cond_pseudo-classical selftrain-classical selftrain_atlas-selftrain cond_pseudo-selftrain cond_pseudo-selftrain_atlas > $D/paired_arms.txt
