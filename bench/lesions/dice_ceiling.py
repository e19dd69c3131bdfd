#!/usr/bin/env python3
"""How high mean Dice can go when a map is made at token resolution, on a `medsad synth` benchmark.

MedSAD-CLIP's maps are its patch grid (for the demo's model 16x16 tokens of 8 pixels at 128 px)
upsampled bilinearly. Even a map that knew every lesion exactly cannot outline one finer than
that. This script builds that perfect map: each abnormal image's true mask average-pooled to the
token grid and upsampled bilinearly to the image, thresholded at the one value that maximises
the mean per-image Dice over the split (as `medsad train` calibrates on validation, here on the
split itself, so the figure is an upper bound). Its mean
Dice, overall and per lesion kind, is a ceiling for any model with that token size.

With EVAL_DIR (a `medsad eval --out` folder of the same split) the model's own mean Dice per
kind, from its per_image.csv, is printed beside the ceiling.

Usage: bench/lesions/dice_ceiling.py BENCHMARK_DIR [EVAL_DIR] [--split test] [--token 8 ...]
"""
import argparse
import csv
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def dice(predicted, truth):
    return 2.0 * (predicted & truth).sum() / max(1, predicted.sum() + truth.sum())


def token_map(mask, token):
    """[H, W] bool -> [H, W] float: the mask's share of each token, upsampled bilinearly."""
    t = torch.tensor(mask, dtype=torch.float32)[None, None]
    pooled = F.avg_pool2d(t, token, ceil_mode=True)
    return F.interpolate(pooled, size=mask.shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def model_dice_by_kind(eval_dir, kinds_by_path):
    """kind -> the model's per-image Dice, from eval's per_image.csv (abnormal images only)."""
    path = os.path.join(eval_dir, "per_image.csv")
    try:
        rows = list(csv.DictReader(open(path)))
    except OSError as e:
        sys.exit(f"dice_ceiling.py: {path}: cannot be read ({e.strerror})")
    out = {}
    for row in rows:
        if row.get("label") != "1" or not row.get("dice"):
            continue
        for suffix, kind in kinds_by_path.items():  # eval writes paths as given on its command line
            if row["path"].endswith(suffix):
                out.setdefault(kind, []).append(float(row["dice"]))
                break
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark")
    parser.add_argument("eval_dir", nargs="?")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--token", type=int, nargs="+", default=[8], help="token sizes in pixels")
    args = parser.parse_args()
    if any(t < 1 for t in args.token):
        sys.exit("dice_ceiling.py: --token sizes must be at least 1 pixel")
    record_path = os.path.join(args.benchmark, "synth.json")
    try:
        record = json.load(open(record_path))
    except (OSError, ValueError) as e:
        sys.exit(f"dice_ceiling.py: {record_path}: not a medsad synth benchmark ({e.__class__.__name__})")
    images = [i for i in record["images"] if i["split"] == args.split and i["label"]]
    if not images:
        sys.exit(f"dice_ceiling.py: {record_path}: no abnormal images in the {args.split} split")
    masks = [np.asarray(Image.open(os.path.join(args.benchmark, i["mask"]))) > 0 for i in images]
    kinds = [i["kind"] for i in images]
    model = model_dice_by_kind(args.eval_dir, {i["image"]: i["kind"] for i in images}) if args.eval_dir else {}

    names = sorted(set(kinds))
    header = f"{'token':>6s} {'threshold':>9s} {'all':>7s} " + " ".join(f"{k:>13s}" for k in names)
    print(f"Mean Dice of the perfect map at token resolution, {args.split} split, {len(images)} abnormal images")
    print(header)
    for token in args.token:
        maps = [token_map(m, token) for m in masks]
        best, threshold = -1.0, 0.0
        for t in np.arange(1, 100) / 100.0:  # a grid of 0.01: finer moves the mean by < 0.002
            score = np.mean([dice(m >= t, g) for m, g in zip(maps, masks)])
            if score > best:
                best, threshold = score, t
        per = {k: np.mean([dice(m >= threshold, g) for m, g, kk in zip(maps, masks, kinds) if kk == k]) for k in names}
        print(f"{token:6d} {threshold:9.3f} {best:7.3f} " + " ".join(f"{per[k]:13.3f}" for k in names))
    if model:
        every = [d for v in model.values() for d in v]
        print(f"{'model':>6s} {'':9s} {np.mean(every):7.3f} " +
              " ".join(f"{np.mean(model[k]) if k in model else float('nan'):13.3f}" for k in names))


if __name__ == "__main__":
    main()
