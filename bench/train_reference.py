"""The reference side of bench/train.sh (nnU-Net v2.8.1, PyTorch on the CPU).

  python train_reference.py iteration PREPROCESSED_DATASET_FOLDER CONFIG ITERATIONS
      ms per training iteration (forward, backward, optimiser step) on one fixed random batch of
      the planned batch and patch size, after 2 warm-up iterations.
  python train_reference.py flops PREPROCESSED_DATASET_FOLDER CONFIG
      GFLOP of one training iteration (forward + backward) by PyTorch's FLOP counter.
  python train_reference.py peak [bf16]
      GFLOP/s of a 4096² fp32 (or bf16) matrix product (the machine's measured GEMM peak; PyTorch
      multiplies bf16 with AMX or AVX512-BF16 where the CPU has them).
  python train_reference.py dice PREPROCESSED_DATASET_FOLDER CONFIG EPOCHS ITERATIONS VAL_ITERATIONS
      trains fold 0 with that schedule (nnUNetTrainer otherwise), validates, prints the mean
      foreground Dice of validation/summary.json.
Threads: THREADS (default 2).
"""
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")
import torch

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
from batchgenerators.utilities.file_and_folder_operations import join, load_json
import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def make(pre, config, cls=nnUNetTrainer):
    plans = load_json(join(pre, "nnUNetPlans.json"))
    plans["continue_training"] = False
    return cls(plans, config, 0, load_json(join(pre, "dataset.json")), device=torch.device("cpu"))


def fixed_batch(pre, config):
    """An initialised trainer and one random batch of the planned batch and patch size."""
    # The fixed batch needs no preprocessed data on disk in the reference's format.
    trainer_module.infer_dataset_class = lambda folder: None
    trainer = make(pre, config)
    trainer.initialize()
    cm = trainer.configuration_manager
    bs, ps = cm.batch_size, cm.patch_size
    nch = len(trainer.dataset_json["channel_names"])
    data = torch.randn(bs, nch, *ps)
    seg = torch.randint(0, len(trainer.label_manager.all_labels), (bs, 1, *ps)).float()
    targets = []
    for s in trainer._get_deep_supervision_scales():
        shape = [round(p * f) for p, f in zip(ps, s)]
        targets.append(torch.nn.functional.interpolate(seg, size=shape, mode="nearest-exact"))
    return trainer, {"data": data, "target": targets}


def iteration(pre, config, n):
    trainer, batch = fixed_batch(pre, config)
    bs, ps = trainer.configuration_manager.batch_size, trainer.configuration_manager.patch_size
    trainer.network.train()
    for _ in range(2):
        trainer.train_step(batch)
    t = time.perf_counter()
    for _ in range(n):
        trainer.train_step(batch)
    dt = (time.perf_counter() - t) / n
    print(f"{1000 * dt:.1f} ms/iteration (batch {bs}, patch {list(ps)})")


def flops(pre, config):
    from torch.utils.flop_counter import FlopCounterMode

    trainer, batch = fixed_batch(pre, config)
    trainer.network.train()
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step(batch)
    print(f"{counter.get_total_flops() / 1e9:.1f} GFLOP/iteration")


def peak(dtype):
    a, b = torch.randn(4096, 4096, dtype=dtype), torch.randn(4096, 4096, dtype=dtype)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(5))
    print(f"{2 * 4096**3 / best / 1e9:.0f} GFLOP/s")


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def dice(pre, config, epochs, iterations, val_iterations):
    class BenchTrainer(nnUNetTrainer):
        # nnU-Net records its constructor's arguments by name, so they are spelled out here.
        def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cpu")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = epochs
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = val_iterations

    trainer = make(pre, config, BenchTrainer)
    trainer.run_training()
    trainer.perform_actual_validation()
    summary = load_json(join(trainer.output_folder, "validation", "summary.json"))
    print(f"Dice {summary['foreground_mean']['Dice']:.4f}")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "peak":
        peak(torch.bfloat16 if sys.argv[2:] == ["bf16"] else torch.float32)
        sys.exit()
    pre, config = sys.argv[2], sys.argv[3]
    if mode == "iteration":
        iteration(pre, config, int(sys.argv[4]))
    elif mode == "flops":
        flops(pre, config)
    else:
        dice(pre, config, int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
