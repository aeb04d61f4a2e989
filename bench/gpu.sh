#!/usr/bin/env bash
# Benchmark: training and prediction on an NVIDIA GPU (the `cuda` build), on generated 2d and
# 3d_fullres datasets, in each precision of PRECISIONS: training iterations per second, peak GPU
# memory (nvidia-smi, sampled every 0.2 s), validation Dice of a short run, seconds per predicted
# case, and agreement of the GPU's predictions with the CPU backend's from the same checkpoint
# (Dice between the two label maps, per configuration).
#
#   bash bench/gpu.sh [EPOCHS] [ITERATIONS_PER_EPOCH]
#
# NNUNET=path/to/nnunet skips the build (`cargo build --release -p nnunet-cli --features cuda`,
# which needs the CUDA toolkit and, for its build scripts, the network); DEVICE=wgpu (or cpu)
# runs the same on another backend to try the script where there is no NVIDIA GPU.
# PRECISIONS defaults to "auto"; -precision lists what a build accepts on a device.
# Sized to finish within 10 minutes with the build on a 16-core machine with one GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-3}
IPE=${2:-50}
DEVICE=${DEVICE:-cuda}
PRECISIONS=${PRECISIONS:-auto}
TEST_CASES=4
FEATURE=$([ "$DEVICE" = cpu ] && echo "" || echo "--features ${DEVICE%%:*}")
if [ -z "${NNUNET:-}" ]; then
  # shellcheck disable=SC2086
  cargo build --release -q -p nnunet-cli $FEATURE
  NNUNET=$PWD/target/release/nnunet
fi
"$NNUNET" --version
WORK=$(mktemp -d)
SAMPLER=""
trap '[ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null; rm -rf "$WORK"' EXIT
export nnUNet_raw="$WORK/raw" nnUNet_preprocessed="$WORK/pre" nnUNet_results="$WORK/results"
mkdir -p "$nnUNet_raw"
"$NNUNET" make-example-dataset -d 980 --shape 320 256 --cases 12 --test-cases $TEST_CASES >/dev/null
"$NNUNET" make-example-dataset -d 981 --3d --shape 64 96 80 --cases 12 --test-cases $TEST_CASES >/dev/null
"$NNUNET" plan-and-preprocess -d 980 -c 2d -np 8 >/dev/null
"$NNUNET" plan-and-preprocess -d 981 -c 3d_fullres -np 8 >/dev/null

# Peak used GPU memory (MiB) while the command runs; "n/a" without nvidia-smi.
with_gpu_memory() {
  if ! command -v nvidia-smi >/dev/null; then
    "$@"
    echo "n/a" >"$WORK/gpu_mb"
    return
  fi
  (while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; sleep 0.2; done) >"$WORK/mem.log" &
  SAMPLER=$!
  "$@"
  kill "$SAMPLER"
  SAMPLER=""
  sort -n "$WORK/mem.log" | tail -1 >"$WORK/gpu_mb"
}
mean_dice() { grep -o "mean foreground Dice [0-9.]*" "$1" | tail -1 | awk '{print $NF}'; }

for entry in "980 2d Dataset980_Synthetic2D" "981 3d_fullres Dataset981_Synthetic3D"; do
  read -r id config name <<<"$entry"
  for p in $PRECISIONS; do
    rm -rf "$nnUNet_results"
    with_gpu_memory "$NNUNET" train $id $config 0 -device "$DEVICE" -precision "$p" --epochs "$EPOCHS" \
      --iterations-per-epoch "$IPE" --val-iterations-per-epoch 5 >"$WORK/train.log" 2>&1
    ips=$(grep -o "[0-9.]* iterations/s" "$WORK/train.log" | awk '{print $1}')
    echo "$config $p on $DEVICE: $ips it/s, peak GPU memory $(cat "$WORK/gpu_mb") MiB, validation Dice $(mean_dice "$WORK/train.log") ($EPOCHS × $IPE iterations)"
    images="$nnUNet_raw/$name/imagesTs"
    start=$(date +%s.%N)
    "$NNUNET" predict -i "$images" -o "$WORK/pred_gpu" -d $id -c $config -f 0 -device "$DEVICE" \
      -precision "$p" --disable-progress-bar >/dev/null 2>&1
    t=$(python3 -c "print(f'{($(date +%s.%N) - $start) / $TEST_CASES:.2f}')")
    "$NNUNET" predict -i "$images" -o "$WORK/pred_cpu" -d $id -c $config -f 0 -device cpu \
      -precision fp32 --disable-progress-bar >/dev/null 2>&1
    agreement=$("$NNUNET" evaluate-simple "$WORK/pred_cpu" "$WORK/pred_gpu" -l 1 2 2>&1 | grep -o "mean foreground Dice: [0-9.]*" | awk '{print $NF}')
    echo "  predict: $t s per case (with start-up, $TEST_CASES cases); agreement with the CPU backend (Dice of the label maps): $agreement"
    rm -rf "$WORK/pred_gpu" "$WORK/pred_cpu"
  done
done
