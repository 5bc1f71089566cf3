#!/bin/bash
# usage: confirm.sh NAME SEEDS "overrides..."   -- trains gvae_brain2d with each seed, evaluates on the test split
set -euo pipefail
name=$1; seeds=$2; shift 2
cd /work/main && . .venv/bin/activate && export OMP_NUM_THREADS=1
B=bundles/gvae_brain2d/configs
for s in $seeds; do
  out=/work/runs/confirm/$name/seed$s
  mkdir -p $out
  start=$(date +%s)
  python -m monai.bundle run training --config_file $B/train.yaml --meta_file $B/metadata.json \
      --bundle_root bundles/gvae_brain2d --output_dir $out --seed $s --progress false "$@" > $out/train.log 2>&1
  echo "train_seconds $(( $(date +%s) - start ))" > $out/time.txt
  python -m monai.bundle run evaluating --config_file "['$B/train.yaml','$B/evaluate.yaml']" \
      --meta_file $B/metadata.json --bundle_root bundles/gvae_brain2d --output_dir $out --seed $s "$@" > $out/eval.log 2>&1
done
