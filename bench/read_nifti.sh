#!/usr/bin/env bash
# Benchmark: reading a 512x512x300 int16 .nii.gz into float32, nnunet's NIfTI reader (SimpleITKIO,
# through `nnunet info`) against nibabel + numpy (`nib.load(f).get_fdata(dtype=float32)`, what
# nnU-Net's NibabelIO does) on the same file. Prints the best of N runs for each and the ratio.
#
#   bash bench/read_nifti.sh [RUNS]
#
# Needs the reference environment (../shared/reference/setup.sh installs it; nibabel comes with it).
# Ours is timed as a whole process (start, read, statistics, exit); nibabel in-process, without the
# Python start-up: the comparison is conservative for us.
source "$(dirname "$0")/common.sh"
RUNS=${1:-3}
bench_start

"$REF/venv/bin/python" - "$WORK/ct.nii.gz" "$NNUNET" "$RUNS" <<'PY'
import subprocess, sys, time
import numpy as np, nibabel as nib

path, nnunet, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
# CT-like volume: smooth anatomy-like structure plus noise, int16 HU values.
z, y, x = np.meshgrid(np.arange(300), np.arange(512), np.arange(512), indexing="ij")
body = ((x - 256) ** 2 + (y - 256) ** 2) < 200 ** 2
rng = np.random.default_rng(0)
vol = np.where(body, 40 + 30 * np.sin(x / 17.0) * np.cos(y / 23.0) + 10 * np.sin(z / 7.0), -1000)
vol = (vol + rng.normal(0, 15, vol.shape)).astype(np.int16)
img = nib.Nifti1Image(np.ascontiguousarray(vol.transpose(2, 1, 0)), np.diag([0.7, 0.7, 1.5, 1]))
nib.save(img, path)
del vol, x, y, z, body
size = __import__("os").path.getsize(path)
print(f"file: 512x512x300 int16, {size / 1e6:.1f} MB compressed")

def best(fn):
    times = []
    for _ in range(runs):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return min(times)

def ours():
    subprocess.run([nnunet, "info", path], check=True, stdout=subprocess.DEVNULL)

def nibabel():
    data = nib.load(path).get_fdata(dtype=np.float32)
    assert data.shape == (512, 512, 300)

t_ours, t_ref = best(ours), best(nibabel)
print(f"nnunet (SimpleITKIO, whole process): {t_ours:.2f} s")
print(f"nibabel + numpy (in process):        {t_ref:.2f} s")
print(f"ratio nibabel / nnunet: {t_ref / t_ours:.2f}x (above 1 means nnunet is faster)")
PY
