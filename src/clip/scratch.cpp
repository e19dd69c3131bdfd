#include "clip/scratch.h"

#include <cmath>
#include <string>

#include "core/error.h"

namespace medsad::clip {
namespace {

void check_range(const char* option, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi)
    fail("", std::string("--") + option + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                 ", got " + std::to_string(value));
}

// OpenAI CLIP's initialize_parameters for one transformer of `width` and `layers` blocks.
void init_transformer(TransformerImpl& transformer, int64_t width, int64_t layers) {
  const double proj_std = std::pow(width, -0.5) * std::pow(2.0 * layers, -0.5);
  const double attn_std = std::pow(width, -0.5);
  const double fc_std = std::pow(2.0 * width, -0.5);
  for (auto& block : transformer.blocks) {
    torch::nn::init::normal_(block->attn->in_proj_weight, 0, attn_std);
    torch::nn::init::normal_(block->attn->out_proj->weight, 0, proj_std);
    torch::nn::init::normal_(block->c_fc->weight, 0, fc_std);
    torch::nn::init::normal_(block->c_proj->weight, 0, proj_std);
    for (auto* bias : {&block->attn->in_proj_bias, &block->attn->out_proj->bias, &block->c_fc->bias,
                       &block->c_proj->bias})
      torch::nn::init::zeros_(*bias);
  }
}

}  // namespace

ClipConfig scratch_clip_config(const ScratchClipOptions& o, int64_t vocab_size) {
  check_range("scratch-width", o.width, 64, 2048);
  check_range("scratch-layers", o.layers, 1, 48);
  check_range("scratch-text-width", o.text_width, 64, 2048);
  check_range("scratch-text-layers", o.text_layers, 1, 24);
  check_range("scratch-context", o.context_length, 8, 512);
  check_range("scratch-embed", o.embed_dim, 16, 2048);
  check_range("image-size", o.image_size, 32, 1024);
  if (o.width % 64 != 0 || o.text_width % 64 != 0)
    fail("", "--scratch-width and --scratch-text-width must be multiples of 64 (64-wide attention heads)");
  if (o.image_size % o.patch_size != 0)
    fail("", "--image-size " + std::to_string(o.image_size) + " is not a multiple of the patch size " +
                 std::to_string(o.patch_size));
  ClipConfig c;
  c.vision.width = o.width;
  c.vision.layers = o.layers;
  c.vision.heads = o.width / 64;
  c.vision.mlp_width = 4 * o.width;
  c.vision.patch_size = o.patch_size;
  c.vision.image_size = o.image_size;
  if (o.stem == PatchStem::Conv) fail("", "--scratch-stem: the scratch backbone needs a convolutional stem");
  c.vision.stem = o.stem;
  c.vision.stem_channels = o.stem_channels;
  c.text.width = o.text_width;
  c.text.layers = o.text_layers;
  c.text.heads = o.text_width / 64;
  c.text.mlp_width = 4 * o.text_width;
  c.text.context_length = o.context_length;
  c.text.vocab_size = vocab_size;
  c.embed_dim = o.embed_dim;
  c.activation = Activation::Gelu;
  try {
    c.validate();
  } catch (const Error& e) {
    fail("", "scratch backbone: " + e.problem());
  }
  return c;
}

std::string position_init_name(PositionInit init) { return init == PositionInit::SineCosine ? "sincos" : "random"; }

torch::Tensor sine_cosine_positions(int64_t grid, int64_t width) {
  TORCH_CHECK(width % 4 == 0, "sine-cosine positions need a width divisible by 4, got ", width);
  const int64_t q = width / 4;
  const auto omega = torch::pow(10000.0, -torch::arange(q, torch::kFloat64) / q);  // [q]
  const auto angles = torch::outer(torch::arange(grid, torch::kFloat64), omega);    // [grid, q]
  const auto one_axis = torch::cat({torch::sin(angles), torch::cos(angles)}, 1);    // [grid, 2q]
  const auto rows = one_axis.unsqueeze(1).expand({grid, grid, 2 * q});              // by the token's row
  const auto cols = one_axis.unsqueeze(0).expand({grid, grid, 2 * q});              // by its column
  return torch::cat({rows, cols}, 2).reshape({grid * grid, width}).to(torch::kFloat32);
}

ClipModel build_scratch_clip(const ClipConfig& config, PositionInit positions) {
  ClipModel model(config);
  torch::NoGradGuard no_grad;
  auto& text = *model->text;
  torch::nn::init::normal_(text.token_embedding->weight, 0, 0.02);
  torch::nn::init::normal_(text.positional_embedding, 0, 0.01);
  torch::nn::init::normal_(text.text_projection, 0, std::pow(config.text.width, -0.5));
  init_transformer(*text.transformer, config.text.width, config.text.layers);
  auto& visual = *model->visual;
  init_transformer(*visual.transformer, config.vision.width, config.vision.layers);
  // He initialisation keeps the stem's output at the input's scale (GELU between stages, none
  // after the last). LibTorch's default shrinks it ~3x per stage, leaving the image content
  // ~20x weaker than the position embeddings it is added to before ln_pre.
  if (visual.stem) {
    for (size_t s = 0; s < visual.stem->size(); ++s) {
      auto& conv = *visual.stem[s]->as<torch::nn::Conv2dImpl>();
      const bool last = s + 1 == visual.stem->size();
      if (last)
        torch::nn::init::kaiming_normal_(conv.weight, 0.0, torch::kFanIn, torch::kLinear);
      else
        torch::nn::init::kaiming_normal_(conv.weight, 0.0, torch::kFanIn, torch::kReLU);
      torch::nn::init::zeros_(conv.bias);
    }
  }
  if (visual.encoder) {  // each convolution but the last feeds GroupNorm, which sets its own scale
    for (auto& stage : *visual.encoder)
      for (auto* conv : {&stage->as<ConvEncoderStageImpl>()->conv1, &stage->as<ConvEncoderStageImpl>()->conv2}) {
        torch::nn::init::kaiming_normal_((*conv)->weight, 0.0, torch::kFanIn, torch::kReLU);
        torch::nn::init::zeros_((*conv)->bias);
      }
    torch::nn::init::kaiming_normal_(visual.encoder_proj->weight, 0.0, torch::kFanIn, torch::kLinear);
    torch::nn::init::zeros_(visual.encoder_proj->bias);
  }
  if (positions == PositionInit::SineCosine) {
    // Unscaled, as MAE adds them: about 0.7 per channel beside the stem's content at about 1, so
    // that after ln_pre where a token lies is as plain to attention as what it shows.
    visual.positional_embedding.slice(0, 0, 1).zero_();
    const auto table = sine_cosine_positions(config.vision.grid_size(), config.vision.width);  // [G*G, D]
    visual.positional_embedding.slice(0, 1).copy_(table);
  }
  return model;
}

}  // namespace medsad::clip
