#!/usr/bin/env bash
# Benchmark: training on the CPU, nnunet against nnU-Net v2.8.1 (PyTorch), same threads, same
# machine, on generated datasets (`nnunet make-example-dataset`, 2D PNG and 3D NIfTI):
#  1. milliseconds per training iteration (forward, backward, optimiser step) at the planned patch
#     and batch size of `2d` and `3d_fullres`, on one fixed batch (ours:
#     nnUNetTrainerBenchmark_5epochs_noDataLoading; reference: its train_step in a loop), and the
#     peak memory (max RSS) of each process;
#  2. the validation Dice (fold 0) both reach with the same short schedule.
#
#   bash bench/train.sh [THREADS] [ITERATIONS] [EPOCHS] [ITERATIONS_PER_EPOCH]
#
# Needs the reference environment (../shared/reference/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ITER=${2:-10}
EPOCHS=${3:-5}
IPE=${4:-25}
REF=${NNUNET_REF:-$HOME/.cache/nnunet-reference}
[ -x "$REF/venv/bin/python" ] || bash ../shared/reference/setup.sh >/dev/null
# NNUNET=path/to/nnunet skips the release build (the dev build's numeric crates are optimised too).
if [ -z "${NNUNET:-}" ]; then
  cargo build --release -q -p nnunet-cli
  NNUNET=$PWD/target/release/nnunet
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export nnUNet_raw="$WORK/raw" nnUNet_results="$WORK/results" OMP_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS
export THREADS
mkdir -p "$nnUNet_raw" "$nnUNet_results"
"$NNUNET" make-example-dataset -d 960 >/dev/null
"$NNUNET" make-example-dataset -d 961 --3d >/dev/null
for id in 960 961; do
  nnUNet_preprocessed="$WORK/pre_ours" "$NNUNET" plan-and-preprocess -d $id -c 2d 3d_fullres -np 2 >/dev/null 2>&1
  nnUNet_preprocessed="$WORK/pre_ref" "$REF/venv/bin/nnUNetv2_plan_and_preprocess" -d $id -c 2d 3d_fullres -np 2 >/dev/null 2>&1
done
peak() { grep "Maximum resident" "$1" | awk '{printf "%.0f MB", $6/1024}'; }
echo "threads $THREADS"
for pair in "960 2d Dataset960_Synthetic2D" "961 3d_fullres Dataset961_Synthetic3D"; do
  set -- $pair
  id=$1 config=$2 name=$3
  trainer=nnUNetTrainerBenchmark_5epochs_noDataLoading
  nnUNet_preprocessed="$WORK/pre_ours" /usr/bin/time -v -o "$WORK/ours.time" "$NNUNET" train $id $config 0 \
    -tr $trainer --epochs 1 --iterations-per-epoch "$ITER" --val-iterations-per-epoch 1 >/dev/null 2>&1
  ips=$(python3 -c "import json;print(json.load(open('$WORK/results/$name/${trainer}__nnUNetPlans__$config/fold_0/benchmark_result.json'))['train_iterations_per_second'])")
  ours=$(python3 -c "print(f'{1000/$ips:.1f}')")
  ref=$(nnUNet_preprocessed="$WORK/pre_ref" /usr/bin/time -v -o "$WORK/ref.time" "$REF/venv/bin/python" bench/train_reference.py iteration "$WORK/pre_ref/$name" $config "$ITER" 2>/dev/null | tail -1)
  r=${ref%% ms*}
  echo "$config iteration: nnunet $ours ms (peak $(peak "$WORK/ours.time")) | reference $ref (peak $(peak "$WORK/ref.time")) | time ratio ours/ref $(python3 -c "print(f'{$ours / $r:.2f}')")"
done
for pair in "960 2d" "961 3d_fullres"; do
  set -- $pair
  ours=$(nnUNet_preprocessed="$WORK/pre_ours" "$NNUNET" train $1 $2 0 --epochs "$EPOCHS" \
    --iterations-per-epoch "$IPE" --val-iterations-per-epoch 5 2>&1 | grep -o "mean foreground Dice [0-9.]*" | awk '{print $4}')
  ref=$(nnUNet_preprocessed="$WORK/pre_ref" nnUNet_results="$WORK/results_ref" "$REF/venv/bin/python" bench/train_reference.py dice \
    "$WORK/pre_ref/$(ls "$WORK/pre_ref" | grep "^Dataset$1_")" $2 "$EPOCHS" "$IPE" 5 2>/dev/null | tail -1)
  echo "$2 Dice after $EPOCHS x $IPE iterations: nnunet $ours | reference ${ref#Dice }"
done
