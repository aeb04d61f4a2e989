"""Helper of bench/predict.sh (reference environment): generated cases and a tiny 3D model.

    python bench/predict_models.py cases2d OUT_DIR N SIZE        # N PNG images SIZE x SIZE
    python bench/predict_models.py cases3d OUT_DIR N SIZE        # N NIfTI volumes SIZE^3
    python bench/predict_models.py model3d WORK_DIR              # trains a tiny 3d_fullres model
                                                                 # with nnU-Net v2.8.1 (CPU, 1
                                                                 # epoch x 10 iterations), prints
                                                                 # its model folder

The 2D model is the committed fixture tests/fixtures/torch_model (see its make_fixture.py). The
3D model only needs the right shapes and a real architecture: prediction time does not depend on
how well it is trained.
"""
import json
import os
import subprocess
import sys

import numpy as np


def shapes_image(rng, shape):
    image = rng.normal(40.0, 12.0, size=shape)
    label = np.zeros(shape, dtype=np.uint8)
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    for value, brightness in ((1, 150.0), (2, 70.0)):
        r = max(3, min(shape) // 8)
        centre = [rng.integers(r, s - r) for s in shape]
        mask = sum((g - c) ** 2 for g, c in zip(grids, centre)) <= r * r
        label[mask] = value
        image[mask] += brightness
    return np.clip(image, 0, 255), label


def cases(out, n, size, dims):
    import nibabel
    from PIL import Image
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        image, _ = shapes_image(rng, (size,) * dims)
        if dims == 2:
            Image.fromarray(image.astype(np.uint8)).save(os.path.join(out, f"case_{i:03d}_0000.png"))
        else:
            nibabel.save(nibabel.Nifti1Image(image.astype(np.float32), np.eye(4)),
                         os.path.join(out, f"case_{i:03d}_0000.nii.gz"))


def model3d(work):
    import nibabel
    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = os.environ[name] = os.path.join(work, name)
        os.makedirs(env[name], exist_ok=True)
    dataset = "Dataset002_Shapes3D"
    raw = os.path.join(env["nnUNet_raw"], dataset)
    os.makedirs(os.path.join(raw, "imagesTr"), exist_ok=True)
    os.makedirs(os.path.join(raw, "labelsTr"), exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(6):
        image, label = shapes_image(rng, (48, 48, 48))
        nibabel.save(nibabel.Nifti1Image(image.astype(np.float32), np.eye(4)),
                     os.path.join(raw, "imagesTr", f"case_{i:03d}_0000.nii.gz"))
        nibabel.save(nibabel.Nifti1Image(label, np.eye(4)),
                     os.path.join(raw, "labelsTr", f"case_{i:03d}.nii.gz"))
    with open(os.path.join(raw, "dataset.json"), "w") as f:
        json.dump({"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2},
                   "numTraining": 6, "file_ending": ".nii.gz"}, f, indent=4)
    subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", "2", "-c", "3d_fullres", "-np", "1"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    os.environ["nnUNet_n_proc_DA"] = "0"
    pre = os.path.join(env["nnUNet_preprocessed"], dataset)
    plans = load_json(os.path.join(pre, "nnUNetPlans.json"))
    plans["continue_training"] = False
    trainer = nnUNetTrainer(plans, "3d_fullres", 0, load_json(os.path.join(pre, "dataset.json")),
                            device=torch.device("cpu"))
    trainer.num_epochs = 1
    trainer.num_iterations_per_epoch = 10
    trainer.num_val_iterations_per_epoch = 2
    trainer.run_training()
    print(os.path.join(env["nnUNet_results"], dataset, "nnUNetTrainer__nnUNetPlans__3d_fullres"))


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "cases2d":
        cases(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), 2)
    elif what == "cases3d":
        cases(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), 3)
    elif what == "model3d":
        model3d(sys.argv[2])
    else:
        sys.exit(f"unknown command {what}")
