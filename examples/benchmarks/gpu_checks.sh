#!/bin/bash
# The GPU checks of docs/performance.md ("On a GPU", "Figures on a GPU"), as one script for a lent GPU machine:
# throughput figures on CUDA, the gvae_brain2d bundle with AMP (float16 + GradScaler), torchrun DDP on NCCL,
# torch.compile, and the 3D bundle (AMP, gradient checkpointing, critic chunks) through training, inference and evaluation.
# Writes logs under $OUT. Packages the machine lacks travel as wheels in .whl/ (see docs/performance.md):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 -d .whl monai pytorch-ignite nibabel pydicom jsonschema \
#       jsonschema-specifications referencing rpds-py fire termcolor
# SimpleITK need not travel (its wheel alone would pass the 64 MiB transfer): only registration imports it, when it runs.
# Locally, without a GPU: LOCAL=1 DEV=cpu EPOCHS=2 EP=1 OUT=/tmp/out FULLARGS=--quick bash examples/benchmarks/gpu_checks.sh
set -o pipefail
cd "$(dirname "$0")/../.."
DEV=${DEV:-cuda}; EPOCHS=${EPOCHS:-100}; EP=${EP:-10}
source examples/benchmarks/device_env.sh
nvidia-smi -L 2>/dev/null
python3 -c "import torch, monai, ignite; print('torch', torch.__version__, 'monai', monai.__version__, 'ignite', ignite.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"
B=bundles/gvae_brain2d/configs
rm -rf /tmp/amp_run /tmp/ddp_run /tmp/b3d  # the bundles refuse folders that hold an earlier run's checkpoints
F="^USDT|CPUAllocator|SyncActivityProfiler"
echo "=== quick"; timeout 90 python3 examples/benchmarks/throughput.py --device $DEV --quick 2>&1 | grep -v -E "$F" > $OUT/extra.log; echo "rc=$?"; tail -n 3 $OUT/extra.log
echo "=== full"; timeout 240 python3 examples/benchmarks/throughput.py --device $DEV ${FULLARGS:---json $OUT/perf.json} 2>&1 | grep -v -E "$F" | tee $OUT/perf.log
echo "=== bundle amp"; timeout 90 python3 -m monai.bundle run training --config_file $B/train.yaml --meta_file $B/metadata.json --bundle_root bundles/gvae_brain2d --amp true --max_epochs $EPOCHS --output_dir /tmp/amp_run > $OUT/bundle_amp.log 2>&1; echo "rc=$?"; grep -E "Epoch\[$EPOCHS\]|saved final|Engine run finished|Error" $OUT/bundle_amp.log | tail -n 4; cp /tmp/amp_run/samples.png $OUT/amp_samples.png
echo "=== ddp"; timeout 90 python3 -m torch.distributed.run --nproc_per_node=1 -m monai.bundle run training --config_file "['$B/train.yaml','$B/multi_gpu_train.yaml']" --meta_file $B/metadata.json --bundle_root bundles/gvae_brain2d --amp true --max_epochs 20 --output_dir /tmp/ddp_run > $OUT/ddp.log 2>&1; echo "rc=$?"; grep -E "Epoch\[20\]|saved final|Engine run finished|Error|nccl|NCCL" $OUT/ddp.log | tail -n 4
echo "=== compile"; timeout 100 python3 examples/benchmarks/throughput.py --device $DEV --only options --compile --reps 5 2>&1 | grep -v -E "$F" | tee -a $OUT/extra.log | tail -n 8
echo "=== same updates with deterministic kernels"; timeout 100 python3 examples/benchmarks/throughput.py --device $DEV --only a --reps 5 --deterministic 2>&1 | grep -v -E "$F" | tee -a $OUT/extra.log | grep -E "ratio|same updates"
C=bundles/gvae_brain3d/configs; R=/tmp/b3d
run() { name=$1; shift; timeout 120 python3 -m monai.bundle run "$@" > /tmp/$name.log 2>&1; echo "=== $name rc=$?"; cat /tmp/$name.log >> $OUT/3d.log; grep -E "Epoch\[$EP\] Complete|saved final|Engine run finished|Error|wrote|metrics" /tmp/$name.log | tail -n 3; }
run train3d training --config_file $C/train.yaml --meta_file $C/metadata.json --bundle_root bundles/gvae_brain3d --amp true --gradient_checkpointing true --critic_chunk_size 2 --max_epochs $EP --output_dir $R
run infer3d inferring --config_file $C/inference.yaml --meta_file $C/metadata.json --bundle_root bundles/gvae_brain3d --checkpoint $R/model.pt --num_samples 4 --output_dir $R/synth
ls $R/synth | head -n 8
run eval3d evaluating --config_file "['$C/train.yaml','$C/evaluate.yaml']" --meta_file $C/metadata.json --bundle_root bundles/gvae_brain3d --output_dir $R --metrics_file $R/metrics.json
cat $R/metrics.json 2>/dev/null | head -c 600; echo
python3 -c "
import nibabel as nib, glob; f=sorted(glob.glob('$R/synth/*.nii.gz'))[0]; h=nib.load(f).header; print(f, nib.load(f).shape, h['descrip'])"
