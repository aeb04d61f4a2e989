#!/usr/bin/env bash
# Benchmark: training batches per second of the data pipeline (patch sampling + nnU-Net's default
# augmentation + deep-supervision targets) for the planned 2d and 3d_fullres configurations of a
# generated CT-like dataset: `nnunet benchmark-dataloader` against nnU-Net v2.8.1's training data
# loader (nnUNetTrainer.get_dataloaders(), nnUNet_n_proc_DA workers) on the same cores, each on its
# own preprocessed data of the same plans. Prints batches/s for both and the ratio.
#
#   bash bench/dataloader.sh [BATCHES] [WORKERS] [CASES]
#
# Needs the reference environment (../shared/reference/setup.sh installs it).
source "$(dirname "$0")/common.sh"
BATCHES=${1:-40}
WORKERS=${2:-2}
CASES=${3:-6}
bench_start
"$REF/venv/bin/python" bench/make_ct_dataset.py "$WORK/raw/Dataset950_BenchCt" "$CASES"
export nnUNet_raw="$WORK/raw" nnUNet_results="$WORK/results" OMP_NUM_THREADS=1
mkdir -p "$WORK/results"
nnUNet_preprocessed="$WORK/pre_ours" "$NNUNET" plan-and-preprocess -d 950 -c 2d 3d_fullres -np 2 >/dev/null
nnUNet_preprocessed="$WORK/pre_ref" "$REF/venv/bin/nnUNetv2_plan_and_preprocess" -d 950 -c 2d 3d_fullres -np 2 >/dev/null 2>&1

for config in 2d 3d_fullres; do
  ours=$(nnUNet_preprocessed="$WORK/pre_ours" "$NNUNET" benchmark-dataloader -d 950 -c "$config" \
    -n "$BATCHES" --workers "$WORKERS" | tail -1)
  ref=$(nnUNet_preprocessed="$WORK/pre_ref" nnUNet_n_proc_DA="$WORKERS" "$REF/venv/bin/python" - "$config" "$BATCHES" <<'PY' 2>/dev/null | tail -1
import os, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
from batchgenerators.utilities.file_and_folder_operations import join, load_json
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
config, n = sys.argv[1], int(sys.argv[2])
pre = join(os.environ["nnUNet_preprocessed"], "Dataset950_BenchCt")
plans = load_json(join(pre, "nnUNetPlans.json")); plans["continue_training"] = False
trainer = nnUNetTrainer(plans, config, 0,
                        load_json(join(pre, "dataset.json")), device=torch.device("cpu"))
trainer.initialize()
dl_train, _ = trainer.get_dataloaders()
for _ in range(3):  # warm-up: workers start, first batches
    next(dl_train)
t = time.perf_counter()
for _ in range(n):
    next(dl_train)
dt = time.perf_counter() - t
print(f"{n / dt:.2f} batches/s, {1000 * dt / n:.1f} ms/batch")
PY
)
  o=${ours%% batches/s*}; r=${ref%% batches/s*}
  echo "$config: nnunet $ours | reference $ref | ratio $(python3 -c "print(f'{$o / $r:.2f}x')")"
done
