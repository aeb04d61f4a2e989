#!/usr/bin/env bash
# Benchmark: fingerprint + planning + preprocessing (`plan-and-preprocess`, configurations 2d and
# 3d_fullres, plus 3d_lowres where planned) of the same generated CT-like dataset, nnunet against
# nnU-Net v2.8.1's nnUNetv2_plan_and_preprocess, with the same number of worker processes. Prints
# the wall time and peak memory (maximum resident set size of the process tree's largest process
# as reported by GNU time, plus the sum over all processes for the reference, whose workers are
# separate processes) of each, and the ratios.
#
#   bash bench/plan_and_preprocess.sh [CASES] [NP]
#
# Needs the reference environment (../shared/reference/setup.sh installs it).
source "$(dirname "$0")/common.sh"
CASES=${1:-10}
NP=${2:-2}
bench_start

# The dataset: CASES CT-like volumes of 64-96 slices of 256x256 at 0.8 mm in-plane and 2.5-5 mm
# slices, int16, with an organ and a lesion label; both tools read the same files.
"$REF/venv/bin/python" bench/make_ct_dataset.py "$WORK/raw/Dataset950_BenchCt" "$CASES"

run() {  # name, preprocessed dir, command...
  local name=$1 pre=$2; shift 2
  mkdir -p "$pre" "$WORK/results"
  /usr/bin/time -f "%e %M" -o "$WORK/$name.time" env nnUNet_raw="$WORK/raw" nnUNet_preprocessed="$pre" \
    nnUNet_results="$WORK/results" OMP_NUM_THREADS=1 "$@" >"$WORK/$name.log" 2>&1 \
    || { cat "$WORK/$name.log"; exit 1; }
}

# Peak memory of the reference includes its worker processes: sample the summed RSS of the whole
# process tree below the measured command.
tree_rss_peak() {  # pid -> prints the peak summed RSS in KB while pid lives
  local pid=$1 peak=0 sum
  while kill -0 "$pid" 2>/dev/null; do
    sum=$(ps -eo pid=,ppid=,rss= | awk -v root="$pid" '
      { parent[$1] = $2; rss[$1] = $3 }
      END {
        for (p in parent) {
          q = p
          while (q != "" && q != 0 && q != 1) { if (q == root) { s += rss[p]; break } q = parent[q] }
        }
        print s + 0
      }')
    [ "$sum" -gt "$peak" ] && peak=$sum
    sleep 0.2
  done
  echo "$peak"
}

measure() {  # name, preprocessed dir, command...
  local name=$1
  run "$@" &
  local pid=$!
  sleep 0.1
  local peak
  peak=$(tree_rss_peak "$pid")
  wait "$pid"
  read -r secs maxrss <"$WORK/$name.time"
  echo "$name $secs $maxrss $peak" >>"$WORK/results.txt"
}

measure ours "$WORK/pre_ours" "$NNUNET" plan-and-preprocess -d 950 -np "$NP" -npfp "$NP" -c 2d 3d_fullres 3d_lowres
measure reference "$WORK/pre_ref" "$REF/venv/bin/nnUNetv2_plan_and_preprocess" -d 950 -np "$NP" -npfp "$NP" -c 2d 3d_fullres 3d_lowres

"$REF/venv/bin/python" - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
rows = {l.split()[0]: l.split()[1:] for l in open(f"{work}/results.txt")}
for name in ("ours", "reference"):
    secs, maxrss, tree = rows[name]
    print(f"{name:10s} wall {float(secs):7.1f} s   peak RSS {int(tree) / 1024:7.0f} MB (process tree), "
          f"{int(maxrss) / 1024:7.0f} MB (largest process)")
o, r = rows["ours"], rows["reference"]
print(f"speed-up (reference time / ours): {float(r[0]) / float(o[0]):.2f}x")
print(f"memory (ours / reference, process tree): {int(o[2]) / max(int(r[2]), 1):.2f}")
a = json.load(open(f"{work}/pre_ours/Dataset950_BenchCt/nnUNetPlans.json"))
b = json.load(open(f"{work}/pre_ref/Dataset950_BenchCt/nnUNetPlans.json"))
print("plans identical to the reference:", a == b)
PY
