"""Seeds fuzz/corpus/readers/ from the readers' test fixtures: each seed is one selector byte
(the index of the file ending in fuzz_targets/readers.rs's ENDINGS) followed by a valid file."""
import hashlib, os, sys
HERE = os.path.dirname(os.path.abspath(__file__))
ENDINGS = [".nii", ".nii.gz", ".png", ".bmp", ".tif", ".jpg", ".tiff", ".nrrd", ".nhdr", ".mha",
           ".mhd", ".gipl", ".gipl.gz"]
out = os.path.join(HERE, "corpus", "readers")
os.makedirs(out, exist_ok=True)
fixtures = os.path.join(HERE, "..", "plugins", "tests", "fixtures")
for root, _, files in os.walk(fixtures):
    for f in sorted(files):
        ending = next((e for e in sorted(ENDINGS, key=len, reverse=True) if f.endswith(e)), None)
        if ending is None:
            continue
        data = bytes([ENDINGS.index(ending)]) + open(os.path.join(root, f), "rb").read()
        if len(data) > 64 * 1024:
            continue
        open(os.path.join(out, hashlib.sha1(data).hexdigest()), "wb").write(data)
print(len(os.listdir(out)), "seeds in", out)
