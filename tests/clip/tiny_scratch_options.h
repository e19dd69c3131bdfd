// The small scratch backbone the scratch-CLIP and scratch-model tests build: 32 px input, a
// stride-8 conv stem (4x4 tokens), width 64 (one head), 2 image blocks, 1 text block, and a text
// context long enough for the fixed template prompts ("a close-up photo of the ..." in bytes).
#pragma once
#include "clip/scratch.h"

namespace medsad::test {

inline clip::ScratchClipOptions tiny_scratch_options() {
  clip::ScratchClipOptions o;
  o.image_size = 32;
  o.patch_size = 8;
  o.width = 64;
  o.layers = 2;
  o.text_width = 64;
  o.text_layers = 1;
  o.context_length = 64;
  o.embed_dim = 32;
  return o;
}

// The same with the convolutional-encoder stem (16, 32, 64 channels).
inline clip::ScratchClipOptions tiny_encoder_scratch_options() {
  auto o = tiny_scratch_options();
  o.stem = clip::PatchStem::ConvEncoder;
  o.stem_channels = 16;
  return o;
}

}  // namespace medsad::test
