#!/usr/bin/env bash
# Benchmark: training on the CPU, nnunet (in each precision) against nnU-Net v2.8.1 (PyTorch,
# fp32: the reference has no mixed precision on the CPU), same threads, same machine, on generated
# datasets at their planned sizes (2d: 320×256 images, patch 320×256, batch 2; 3d_fullres:
# 40×56×40 volumes, patch 40×56×40, batch 2):
#  1. ms per training iteration (forward, backward, optimiser step) on one fixed batch (ours:
#     nnUNetTrainerBenchmark_5epochs_noDataLoading; reference: its train_step in a loop), the peak
#     memory (max RSS) of each process, and the fraction of the machine's measured GEMM peak in
#     that precision (PyTorch 4096² product, fp32 and bf16) that each step reaches (FLOPs by
#     PyTorch's FLOP counter);
#  2. a whole short run (EPOCHS × ITERATIONS_PER_EPOCH, 5 validation iterations, final
#     validation) with the same seed: wall time, peak memory and validation Dice in each precision.
#
#   bash bench/train.sh [THREADS] [ITERATIONS] [EPOCHS] [ITERATIONS_PER_EPOCH]
#
# PRECISIONS="fp32 bf16" (default) chooses ours; NNUNET=path/to/nnunet skips the release build;
# PARTS="steps runs" (default) chooses the sections (each compares with the reference in the run).
# Needs the reference environment (../shared/reference/setup.sh installs it). Run it on a quiet
# machine.
source "$(dirname "$0")/common.sh"
THREADS=${1:-2}
ITER=${2:-10}
EPOCHS=${3:-5}
IPE=${4:-25}
# PRECISIONS="fp32 bf16" (default) runs ours once per precision with -precision (auto: bf16
# where the CPU multiplies bf16 natively, fp32 otherwise).
PRECISIONS=${PRECISIONS:-fp32 bf16}
PARTS=${PARTS:-steps runs}
bench_start --keep-nnunet
export nnUNet_raw="$WORK/raw" OMP_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS THREADS
mkdir -p "$nnUNet_raw"
"$NNUNET" make-example-dataset -d 960 --shape 320 256 --cases 10 >/dev/null
"$NNUNET" make-example-dataset -d 961 --3d --shape 40 56 40 --cases 10 >/dev/null
for id in 960 961; do
  nnUNet_preprocessed="$WORK/pre_ours" "$NNUNET" plan-and-preprocess -d $id -c 2d 3d_fullres -np 2 >/dev/null 2>&1
  nnUNet_preprocessed="$WORK/pre_ref" "$REF/venv/bin/nnUNetv2_plan_and_preprocess" -d $id -c 2d 3d_fullres -np 2 >/dev/null 2>&1
done
# The reference's commands below read these; ours set their own.
export nnUNet_preprocessed="$WORK/pre_ref" nnUNet_results="$WORK/results_ref"
peak_mb() { grep "Maximum resident" "$1" | awk '{printf "%.0f", $6/1024}'; }
elapsed() { grep "Elapsed (wall" "$1" | awk '{print $NF}' | awk -F: '{s=0; for(i=1;i<=NF;i++) s=s*60+$i; print s}'; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
GEMM=$("$PY" bench/train_reference.py peak 2>/dev/null | tail -1 | awk '{print $1}')
GEMM16=$("$PY" bench/train_reference.py peak bf16 2>/dev/null | tail -1 | awk '{print $1}')
echo "threads $THREADS; GEMM peak (PyTorch 4096² product): fp32 $GEMM GFLOP/s, bf16 $GEMM16 GFLOP/s"
datasets=("960 2d Dataset960_Synthetic2D" "961 3d_fullres Dataset961_Synthetic3D")
trainer=nnUNetTrainerBenchmark_5epochs_noDataLoading
if [[ " $PARTS " == *" steps "* ]]; then
for entry in "${datasets[@]}"; do
  read -r id config name <<<"$entry"
  pre_ref="$WORK/pre_ref/$name"
  gflop=$("$PY" bench/train_reference.py flops "$pre_ref" $config 2>/dev/null | tail -1 | awk '{print $1}')
  ref=$(/usr/bin/time -v -o "$WORK/ref.time" "$PY" bench/train_reference.py iteration "$pre_ref" $config "$ITER" 2>/dev/null | tail -1 | awk '{print $1}')
  echo "$config step ($gflop GFLOP): reference $ref ms, peak $(peak_mb "$WORK/ref.time") MB, $(python3 -c "print(f'{$gflop / $ref * 1e3 / $GEMM:.0%}')") of the fp32 peak"
  for p in $PRECISIONS; do
    rm -rf "$WORK/results"
    nnUNet_preprocessed="$WORK/pre_ours" nnUNet_results="$WORK/results" /usr/bin/time -v -o "$WORK/ours.time" \
      "$NNUNET" train $id $config 0 -tr $trainer -precision "$p" --epochs 1 --iterations-per-epoch "$ITER" \
      --val-iterations-per-epoch 1 >/dev/null 2>&1
    ips=$(python3 -c "import json;print(json.load(open('$WORK/results/$name/${trainer}__nnUNetPlans__$config/fold_0/benchmark_result.json'))['train_iterations_per_second'])")
    ours=$(python3 -c "print(f'{1000 / $ips:.0f}')")
    echo "  nnunet $p: $ours ms, peak $(peak_mb "$WORK/ours.time") MB, ratio ours/reference $(ratio "$ours" "$ref")$(
      python3 -c "peak = $GEMM if '$p' == 'fp32' else $GEMM16; print(f', {$gflop / $ours * 1e3 / peak:.0%} of the $p peak')")"
  done
done
fi
if [[ " $PARTS " == *" runs "* ]]; then
for entry in "${datasets[@]}"; do
  read -r id config name <<<"$entry"
  ref=$(nnUNet_preprocessed="$WORK/pre_ref" nnUNet_results="$WORK/results_ref" /usr/bin/time -v -o "$WORK/ref.time" \
    "$PY" bench/train_reference.py dice "$WORK/pre_ref/$name" $config "$EPOCHS" "$IPE" 5 2>/dev/null | tail -1 | awk '{print $2}')
  rt=$(elapsed "$WORK/ref.time")
  echo "$config short run ($EPOCHS × $IPE iterations + validation): reference ${rt} s, peak $(peak_mb "$WORK/ref.time") MB, Dice $ref"
  for p in $PRECISIONS; do
    rm -rf "$WORK/results"
    dice=$(nnUNet_preprocessed="$WORK/pre_ours" nnUNet_results="$WORK/results" /usr/bin/time -v -o "$WORK/ours.time" \
      "$NNUNET" train $id $config 0 -precision "$p" --epochs "$EPOCHS" --iterations-per-epoch "$IPE" \
      --val-iterations-per-epoch 5 2>&1 | grep -o "mean foreground Dice [0-9.]*" | awk '{print $4}')
    t=$(elapsed "$WORK/ours.time")
    echo "  nnunet $p: ${t} s (ratio $(ratio "$t" "$rt")), peak $(peak_mb "$WORK/ours.time") MB, Dice $dice (reference − ours $(python3 -c "print(f'{$ref - $dice:+.4f}')"))"
  done
done
fi
