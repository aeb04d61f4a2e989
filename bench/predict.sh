#!/usr/bin/env bash
# Benchmark: prediction on the CPU, nnunet against nnU-Net v2.8.1 (PyTorch), same threads, same
# machine, same model: seconds per case with and without test-time mirroring (--disable_tta), for
# generated 2D and 3D cases.
#
#   bash bench/predict.sh [THREADS] [CASES] [SIZE_2D] [SIZE_3D]
#
# Models: 2D is the committed fixture tests/fixtures/torch_model (a small nnU-Net v2 model trained
# with the reference); 3D is a tiny 3d_fullres model trained on the fly with the reference
# (bench/predict_models.py model3d: 1 epoch x 10 iterations, a few minutes), since prediction time
# does not depend on training quality. Each is imported with `nnunet import-torch-checkpoint` and
# predicted by both from the same model: ours with `nnunet predict -m IMPORTED`, the reference's
# with `nnUNetv2_predict_from_modelfolder -m ORIGINAL -device cpu -npp 1 -nps 1`.
# Ours runs in each precision of PRECISIONS (default "fp32 bf16"; the reference computes in fp32).
# Needs the reference environment (../shared/reference/setup.sh installs it).
source "$(dirname "$0")/common.sh"
THREADS=${1:-2}
# PRECISIONS="fp32 bf16" (default) runs ours once per precision with -precision (auto: bf16
# where the CPU multiplies bf16 natively, fp32 otherwise).
PRECISIONS=${PRECISIONS:-fp32 bf16}
CASES=${2:-4}
SIZE2D=${3:-256}
SIZE3D=${4:-96}
# NNUNET=path/to/nnunet skips the release build.
bench_start --keep-nnunet
export OMP_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
export PATH="$REF/venv/bin:$PATH"

TORCH2D=tests/fixtures/torch_model/nnUNetTrainer__nnUNetPlansTiny__2d
TORCH3D=$("$PY" bench/predict_models.py model3d "$WORK/train3d" 2>/dev/null | tail -1)
"$PY" bench/predict_models.py cases2d "$WORK/cases2d" "$CASES" "$SIZE2D"
"$PY" bench/predict_models.py cases3d "$WORK/cases3d" "$CASES" "$SIZE3D"
for dim in 2d 3d; do
  src=$([ $dim = 2d ] && echo "$TORCH2D" || echo "$TORCH3D")
  "$NNUNET" import-torch-checkpoint -i "$src" -o "$WORK/ours_$dim" >/dev/null
done

seconds() { local s=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; python3 -c "import time;print(f'{time.time()-$s:.2f}')"; }
# One-case folders as well: the difference to the CASES run is the time per case without the
# fixed cost of starting (the reference's Python and PyTorch start-up is many seconds).
for dim in 2d 3d; do
  mkdir -p "$WORK/one$dim"
  cp "$(ls "$WORK/cases$dim"/* | head -1)" "$WORK/one$dim/"
done
echo "threads $THREADS, $CASES cases per run (2D ${SIZE2D}^2, 3D ${SIZE3D}^3), seconds per case;"
echo "'marginal' excludes start-up: (time for $CASES cases - time for 1 case) / $((CASES - 1))"
for dim in 2d 3d; do
  src=$([ $dim = 2d ] && echo "$TORCH2D" || echo "$TORCH3D")
  for tta in "" "--disable_tta"; do
    ref=()
    for input in "cases$dim" "one$dim"; do
      rm -rf "$WORK/out_ref"
      ref+=("$(seconds nnUNetv2_predict_from_modelfolder -i "$WORK/$input" -o "$WORK/out_ref" -m "$src" -f 0 \
        -device cpu -npp 1 -nps 1 --disable_progress_bar $tta)")
    done
    for p in $PRECISIONS; do
      ours=()
      for input in "cases$dim" "one$dim"; do
        rm -rf "$WORK/out_ours"
        ours+=("$(seconds "$NNUNET" predict -i "$WORK/$input" -o "$WORK/out_ours" -m "$WORK/ours_$dim" -f 0 \
          --threads "$THREADS" --disable-progress-bar -precision "$p" $tta)")
      done
      python3 - "$dim $p" "${tta:-with TTA}" "$CASES" "${ours[0]}" "${ref[0]}" "${ours[1]}" "${ref[1]}" <<'PYEOF'
import sys
what, tta, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ours, ref, ours1, ref1 = map(float, sys.argv[4:8])
line = f"{what} {tta:>13}: nnunet {ours / n:.2f} s/case | reference {ref / n:.2f} s/case | ratio {ours / ref:.2f}"
if n > 1:
    mo, mr = (ours - ours1) / (n - 1), (ref - ref1) / (n - 1)
    line += f" | marginal: nnunet {mo:.2f} | reference {mr:.2f} | ratio {mo / mr:.2f}"
print(line)
PYEOF
    done
  done
done
