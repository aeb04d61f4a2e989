"""Writes a CT-like raw nnU-Net dataset for the benchmarks: CASES volumes of (64..96)x256x256
int16 at 0.8 x 0.8 x 2.5/5/3 mm with an organ and a lesion label (needs numpy and SimpleITK, both in
the reference environment).

    python bench/make_ct_dataset.py OUT_FOLDER CASES
"""
import json, os, sys
import numpy as np, SimpleITK as sitk
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{out}/imagesTr"); os.makedirs(f"{out}/labelsTr")
rng = np.random.default_rng(0)
for c in range(n):
    z = 64 + (c * 8) % 40
    zz, yy, xx = np.meshgrid(np.arange(z), np.arange(256), np.arange(256), indexing="ij")
    body = (yy - 128) ** 2 + (xx - 128) ** 2 < 110 ** 2
    organ = ((zz - z / 2) / (z / 3)) ** 2 + ((yy - 140) / 40) ** 2 + ((xx - 110) / 50) ** 2 < 1
    lesion = ((zz - z / 2) / 4) ** 2 + ((yy - 140) / 8) ** 2 + ((xx - 110) / 8) ** 2 < 1
    img = np.where(body, 30 + 20 * np.sin(xx / 11.0), -1000) + np.where(organ, 60, 0) + np.where(lesion, 80, 0)
    img = (img + rng.normal(0, 10, img.shape)).astype(np.int16)
    lab = (organ.astype(np.uint8) + lesion.astype(np.uint8))
    sp = (0.8, 0.8, (2.5, 5.0, 3.0)[c % 3])
    for arr, path in ((img, f"{out}/imagesTr/case_{c:03d}_0000.nii.gz"), (lab, f"{out}/labelsTr/case_{c:03d}.nii.gz")):
        im = sitk.GetImageFromArray(arr); im.SetSpacing(sp); sitk.WriteImage(im, path, True)
json.dump({"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1, "lesion": 2},
           "numTraining": n, "file_ending": ".nii.gz", "name": "BenchCt"}, open(f"{out}/dataset.json", "w"), indent=4)
print(f"dataset: {n} cases of (64..96)x256x256 int16, spacing 0.8 x 0.8 x 2.5/5/3 mm")
