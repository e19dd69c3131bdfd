#!/usr/bin/env python3
"""Where a model's pixel scores come from on the brain-MRI lesion benchmark (`medsad synth`).

Pixel AUROC ranks lesion pixels against every other pixel of the test split, most of them the
black background around the head. A model that only learns where the brain is already scores
well on it. This script separates the two, from the maps `medsad eval --save-maps` writes:

  * pixel AUROC per lesion kind (lesion pixels of that kind against all normal pixels),
  * lesion against surrounding tissue: each lesion's pixels against the tissue within 8 pixels
    around it (intensity above 0.25, so not background or CSF), pooled over the test split.
    0.5 means the map does not tell a lesion from the tissue next to it,
  * image AUROC of the top-1% mean of the map, per lesion kind against the normal images,
  * for reference, the pixel AUROC of a map that knows nothing of lesions: 1 on tissue (image
    intensity above 0.25, blurred over 8 pixels), 0 elsewhere.

Usage: bench/lesions/analyse.py BENCHMARK_DIR EVAL_DIR   (EVAL_DIR from eval --save-maps)
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def auroc(pos, neg):
    """Mann-Whitney AUROC with ties counted half."""
    values = np.concatenate([pos, neg])
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return (ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def read_record(bench):
    """The benchmark's synth.json, or exit with one line naming the problem."""
    path = os.path.join(bench, "synth.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"{os.path.basename(sys.argv[0])}: {path}: not a medsad synth benchmark ({e.__class__.__name__})")


def grey(path):
    return np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255.0


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    bench, evaluated = sys.argv[1], sys.argv[2]
    record = read_record(bench)
    if not os.path.isdir(os.path.join(evaluated, "maps")):
        sys.exit(f"analyse.py: {evaluated}/maps: not found (write it with medsad eval --save-maps --out {evaluated})")
    rng = np.random.default_rng(0)
    lesion = {}      # kind -> lesion pixel scores
    surround = []    # scores of tissue around lesions
    normal_pixels = []
    prior_lesion, prior_normal = [], []  # the tissue-only map's scores
    top = {}         # kind (None: normal) -> per-image top-1% means
    for image in record["images"]:
        if image["split"] != "test":
            continue
        name = image["image"].replace("/", "__")
        map_path = os.path.join(evaluated, "maps", name)
        if not os.path.exists(map_path):
            sys.exit(f"analyse.py: {map_path}: no map for this test image (evaluated on another benchmark?)")
        score = np.asarray(Image.open(map_path), dtype=np.float64) / 65535.0
        k = max(1, round(0.01 * score.size))
        kind = image.get("kind") if image["label"] else None
        tissue = torch.tensor(grey(os.path.join(bench, image["image"])) > 0.25, dtype=torch.float32)[None, None]
        prior = F.avg_pool2d(tissue, 17, 1, 8, count_include_pad=False)[0, 0].numpy()
        top.setdefault(kind, []).append(np.sort(score.ravel())[-k:].mean())
        if not image["label"]:
            normal_pixels.append(score.ravel())
            prior_normal.append(prior.ravel())
            continue
        mask = np.asarray(Image.open(os.path.join(bench, image["mask"]))) > 0
        near = F.max_pool2d(torch.tensor(mask, dtype=torch.float32)[None, None], 17, 1, 8)[0, 0].numpy() > 0
        ring = near & ~mask & (grey(os.path.join(bench, image["image"])) > 0.25)
        lesion.setdefault(kind, []).append(score[mask])
        surround.append(score[ring])
        normal_pixels.append(score[~mask])
        prior_lesion.append(prior[mask])
        prior_normal.append(prior[~mask])
    normal_pixels = np.concatenate(normal_pixels)
    normal_pixels = rng.choice(normal_pixels, min(len(normal_pixels), 200000), replace=False)
    surround = np.concatenate(surround)
    surround = rng.choice(surround, min(len(surround), 200000), replace=False)
    all_lesion = np.concatenate([np.concatenate(v) for v in lesion.values()])
    print(f"{'':34s} {'pixel AUROC':>12s} {'vs surrounding':>15s} {'image AUROC':>12s}")
    print(f"{'all lesions':34s} {auroc(all_lesion, normal_pixels):12.3f} {auroc(all_lesion, surround):15.3f} "
          f"{auroc(np.concatenate([top[k] for k in lesion]), np.array(top[None])):12.3f}")
    prior_normal = np.concatenate(prior_normal)
    prior_normal = rng.choice(prior_normal, min(len(prior_normal), 200000), replace=False)
    print(f"{'tissue-only map (no lesion cue)':34s} {auroc(np.concatenate(prior_lesion), prior_normal):12.3f}")
    for kind, scores in sorted(lesion.items()):
        scores = np.concatenate(scores)
        print(f"{kind:34s} {auroc(scores, normal_pixels):12.3f} {'':15s} "
              f"{auroc(np.array(top[kind]), np.array(top[None])):12.3f}")


if __name__ == "__main__":
    main()
