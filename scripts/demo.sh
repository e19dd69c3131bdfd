#!/usr/bin/env bash
# The demo until the lesion benchmark lands: inspect the small reference CLIP in ../shared and
# embed its sample images and a few texts (image-text cosine similarities printed).
set -euo pipefail
medsad=${1:-build/medsad}
shared=${MEDSAD_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
fixture=$shared/fixtures/clip-tiny
if [ ! -d "$fixture" ]; then
  echo "demo: $fixture not found (set MEDSAD_SHARED to the folder holding clip/ and fixtures/)" >&2
  exit 1
fi
echo "== medsad clip info"
"$medsad" clip info --weights "$fixture/openai_jit.pt"
echo
echo "== medsad clip embed (2 images, 2 texts)"
"$medsad" clip embed --weights "$fixture/openai_jit.pt" --bpe "$shared/clip/bpe_simple_vocab_16e6.txt.gz" \
  --image "$fixture/image1.png" --image "$fixture/image2.png" \
  --text "a photo of a normal brain MRI." --text "an MRI slice of a brain with a tumor" > /tmp/medsad_demo_embed.json
/usr/bin/python3 - /tmp/medsad_demo_embed.json <<'PY'
import json, math, sys
d = json.load(open(sys.argv[1]))
norm = lambda v: [x / math.sqrt(sum(y * y for y in v)) for x in v]
imgs = [norm(v) for v in d["image_embeddings"]]
txts = [norm(v) for v in d["text_embeddings"]]
print("token ids of text 1:", [t for t in d["tokens"][0] if t])
print("cosine(image, text)   text1    text2   (random weights: the numbers carry no meaning)")
for i, v in enumerate(imgs):
    print(f"image{i + 1}            " + "  ".join(f"{sum(a * b for a, b in zip(v, t)):+.4f}" for t in txts))
PY
