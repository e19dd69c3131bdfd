#!/usr/bin/env python3
"""An independent reference for the lesion benchmark: a small U-Net trained from scratch in
PyTorch (Debian's python3-torch, fp32), with nothing shared with medsad but the data.

It answers "is the plateau ours, or the benchmark's?": a convolutional network with the
inductive bias a ViT lacks, trained for a comparable number of steps, scored the same way.
It writes the test split's maps as `medsad eval --save-maps` does, so `analyse.py` reads both.

Usage: bench/lesions/unet_reference.py BENCHMARK_DIR OUT_DIR [--steps 300] [--channels 8]
Then:  bench/lesions/analyse.py BENCHMARK_DIR OUT_DIR
(On 2 cores: 300 steps of 16 images take about 2.5 minutes, 1500 steps about 13.)
"""
import argparse
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from analyse import read_record


def load_split(bench, record, split):
    """Images [N, 1, S, S] in [0, 1], masks [N, 1, S, S] 0/1, and the records, in record order."""
    entries = [e for e in record["images"] if e["split"] == split]
    images, masks = [], []
    for e in entries:
        image = np.asarray(Image.open(os.path.join(bench, e["image"])).convert("L"), dtype=np.float32) / 255.0
        images.append(image)
        if e["label"]:
            masks.append((np.asarray(Image.open(os.path.join(bench, e["mask"]))) > 0).astype(np.float32))
        else:
            masks.append(np.zeros_like(image))
    return torch.tensor(np.stack(images))[:, None], torch.tensor(np.stack(masks))[:, None], entries


def load_benchmark(bench):
    """Seeds and threads for a reference run, then (train images, train masks, test images, test
    masks, test records)."""
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    record = read_record(bench)
    train_x, train_y, _ = load_split(bench, record, "train")
    test_x, test_y, test_entries = load_split(bench, record, "test")
    return train_x, train_y, test_x, test_y, test_entries


def save_maps(bench, out, entries, maps):
    """Test maps [N, S, S] in [0, 1] as 16-bit PNGs named as `medsad eval --save-maps` names them."""
    os.makedirs(os.path.join(out, "maps"), exist_ok=True)
    for entry, m in zip(entries, maps):
        name = entry["image"].replace("/", "__")
        Image.fromarray(np.round(m * 65535).astype(np.uint16)).save(os.path.join(out, "maps", name))
    print(f"maps in {out}/maps; now: bench/lesions/analyse.py {bench} {out}")


def double_conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class UNet(nn.Module):
    """Four resolutions (S, S/2, S/4, S/8), c -> 8c channels, skip connections, one logit map."""

    def __init__(self, c):
        super().__init__()
        self.down = nn.ModuleList([double_conv(1, c), double_conv(c, 2 * c), double_conv(2 * c, 4 * c),
                                   double_conv(4 * c, 8 * c)])
        self.up = nn.ModuleList([double_conv(12 * c, 4 * c), double_conv(6 * c, 2 * c), double_conv(3 * c, c)])
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x):  # [B, 1, S, S] -> [B, 1, S, S] logits
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            x = block(torch.cat([F.interpolate(x, scale_factor=2), skips.pop()], 1))
        return self.head(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    train_x, train_y, test_x, _, test_entries = load_benchmark(args.bench)

    model = UNet(args.channels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    start = time.time()
    for step in range(args.steps):
        idx = torch.randint(0, len(train_x), (args.batch,))
        x, y = train_x[idx], train_y[idx]
        if torch.rand(1).item() < 0.5:
            x, y = x.flip(3), y.flip(3)
        logits = model(x)
        p = torch.sigmoid(logits)
        dice = (2 * (p * y).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=torch.tensor(5.0)) + (1 - dice).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step + 1}/{args.steps} loss {loss.item():.3f} ({time.time() - start:.0f} s)", flush=True)

    model.eval()
    with torch.no_grad():
        maps = torch.cat([torch.sigmoid(model(test_x[i:i + 32]))[:, 0] for i in range(0, len(test_x), 32)])
    save_maps(args.bench, args.out, test_entries, maps.numpy())


if __name__ == "__main__":
    main()
