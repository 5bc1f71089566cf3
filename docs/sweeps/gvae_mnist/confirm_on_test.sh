#!/bin/bash
# usage: confirm_on_test.sh NAME SEEDS overrides...  -- gvae_mnist at its CPU budget, each seed trained, then evaluated on
# the test split. Recorded: confirm_on_test.sh before "1 2" --learning_rate 0.0001 --critic_learning_rate 0.0001
# (the old defaults) and confirm_on_test.sh after "1 2" (the new ones), one process per seed.
set -euo pipefail
name=$1; seeds=$2; shift 2
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate && export OMP_NUM_THREADS=1
B=bundles/gvae_mnist/configs
BUDGET="--architecture conv --latent_size 64 --base_channels 16 --max_channels 128 --batch_size 64 --max_epochs 1"
for s in $seeds; do
  out=runs/confirm_mnist/$name/seed$s
  mkdir -p $out
  start=$(date +%s)
  python -m monai.bundle run training --config_file $B/train.yaml --meta_file $B/metadata.json \
      --bundle_root bundles/gvae_mnist --output_dir $out --seed $s --progress false $BUDGET "$@" > $out/train.log 2>&1
  echo "train_seconds $(( $(date +%s) - start ))" > $out/time.txt
  python -m monai.bundle run evaluating --config_file "['$B/train.yaml','$B/evaluate.yaml']" \
      --meta_file $B/metadata.json --bundle_root bundles/gvae_mnist --output_dir $out --seed $s $BUDGET "$@" > $out/eval.log 2>&1
done
