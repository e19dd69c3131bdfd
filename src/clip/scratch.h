// A small CLIP-architecture backbone for when no pretrained CLIP weights exist (`--weights none`):
// randomly initialised as OpenAI CLIP initialises, then trained together with MedSAD-CLIP's own
// parts. Its patch embedding is convolutional: a ViT trained from scratch on a few thousand
// images learns far better with a convolutional stem than with a single patch convolution.
// PatchStem::ConvStack (default) is a stack of strided convolutions; PatchStem::ConvEncoder a
// small CNN encoder with GroupNorm, making the backbone a hybrid ViT (slower per step). Real CLIP
// weights keep their own patch embedding.
#pragma once
#include <cstdint>
#include <string>

#include "clip/clip_model.h"
#include "clip/config.h"

namespace medsad::clip {

// How the image tower's position embeddings start (they are learned either way). Random: CLIP's
// N(0, width^-1/2). SineCosine: the fixed 2-D sine-cosine table of MAE (sine_cosine_positions),
// so that attention can tell neighbouring tokens from distant ones from the first step.
enum class PositionInit { Random, SineCosine };
std::string position_init_name(PositionInit init);  // "random", "sincos"

struct ScratchClipOptions {
  int64_t image_size = 128;      // native input side
  int64_t patch_size = 8;        // stem stride: 16x16 tokens at 128
  PatchStem stem = PatchStem::ConvStack;
  int64_t stem_channels = 16;    // ConvEncoder: first stage's channels (16, 32, 64 at patch 8)
  int64_t width = 192;           // image tower width (heads = width / 64)
  int64_t layers = 4;            // image tower blocks
  int64_t text_width = 128;
  int64_t text_layers = 2;
  int64_t context_length = 64;   // byte-level ids: the longest fixed template with its object fits
  int64_t embed_dim = 128;       // joint space d_j
  PositionInit positions = PositionInit::Random;
};

// The architecture for `options` with a text vocabulary of `vocab_size` ids (258 byte-level).
// Throws Error on absurd sizes.
ClipConfig scratch_clip_config(const ScratchClipOptions& options, int64_t vocab_size);

// A model of `config` with CLIP's initialisation (token embeddings N(0, 0.02), positions
// N(0, 0.01), projections N(0, width^-1/2), attention and MLP weights scaled by depth), drawn from
// LibTorch's generator (seed it with torch::manual_seed for reproducible runs); the image tower's
// grid positions as `positions` says (its class-token position zero with SineCosine).
ClipModel build_scratch_clip(const ClipConfig& config, PositionInit positions = PositionInit::Random);

// MAE's 2-D sine-cosine position table for a grid x grid patch grid of `width` channels (a
// multiple of 4), row-major over the grid: [grid*grid, width]. For the token at (row r, column
// c), with q = width/4 and w_k = 10000^(-k/q): channels [0, q) hold sin(r w_k), [q, 2q) cos(r w_k),
// [2q, 3q) sin(c w_k) and [3q, 4q) cos(c w_k).
torch::Tensor sine_cosine_positions(int64_t grid, int64_t width);

}  // namespace medsad::clip
