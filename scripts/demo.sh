#!/usr/bin/env bash
# `make demo`: generate the brain-MRI lesion benchmark from real anatomy (Colin27 T1, Debian's
# mricron-data), train MedSAD-CLIP on it with a small backbone trained from scratch (no
# pretrained CLIP exists on this machine), evaluate on the held-out test split, compare with
# the non-learned baseline, and write demo/report/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
medsad=${1:-$root/build/medsad}
demo=${MEDSAD_DEMO_DIR:-$root/demo}
# shellcheck source=demo_settings.sh
source "$root/scripts/demo_settings.sh"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

rm -rf "$demo/run" "$demo/report"
mkdir -p "$demo"
stamp "generating the benchmark in $demo/data"
"$medsad" synth --out "$demo/data" "${DEMO_SYNTH_ARGS[@]}" --montage "$demo/report_samples.png"
stamp "training ($DEMO_EPOCHS epochs; progress below on a terminal)"
"$medsad" train --data "$demo/data" --out "$demo/run" "${DEMO_TRAIN_ARGS[@]}" --epochs "$DEMO_EPOCHS" > "$demo/train.json"
stamp "evaluating on the test split"
"$medsad" eval --model "$demo/run/best.ckpt" --data "$demo/data" --out "$demo/report" --cases 4 > /dev/null
mv "$demo/report_samples.png" "$demo/report/benchmark_samples.png"
stamp "baseline"
"$medsad" baseline --data "$demo/data" --out "$demo/report/baseline" > /dev/null
stamp "done"

/usr/bin/python3 - "$demo/report/metrics.json" "$demo/report/baseline/metrics.json" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
model, base, secs = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
rows = [("image AUROC", "image", "auroc"), ("image AP", "image", "ap"), ("sensitivity @ thr", "image", "sensitivity"),
        ("specificity @ thr", "image", "specificity"), ("pixel AUROC", "pixel", "auroc"), ("pixel AP", "pixel", "ap"),
        ("AUPRO (FPR<=0.3)", "pixel", "aupro_0.3"), ("mean Dice @ thr", "pixel", "mean_dice"),
        ("normal px flagged", "pixel", "normal_flagged_fraction")]
f = lambda v: "  n/a" if v is None else f"{v:6.3f}"
# With its 95% bootstrap interval over the test images where eval gives one (image AUROC, Dice).
fci = lambda g, k: f(g.get(k)) + (f" ({g[k + '_ci95'][0]:.2f}-{g[k + '_ci95'][1]:.2f})" if g.get(k + "_ci95") else "")
print(f"\nMedSAD-CLIP on the brain-MRI lesion benchmark, test split ({model['image']['count']} slices, "
      f"{model['image']['abnormal']} with lesions)")
print(f"{'metric':22s} {'MedSAD-CLIP':>22s} {'baseline':>22s}")
for name, group, key in rows:
    print(f"{name:22s} {fci(model[group], key):>22s} {fci(base[group], key):>22s}")
print(f"\nbaseline: per-pixel deviation from the mean normal training slice. In brackets: 95% bootstrap"
      f" intervals over the test images.\nTotal time {secs} s.")
print("report: demo/report/ (metrics.json, per_image.csv, cases/*.png, benchmark_samples.png)")
PY
