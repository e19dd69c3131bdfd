// `medsad clip info|tokenize|embed`: the CLIP backbone on its own, for checking a checkpoint
// and comparing its outputs with the reference implementations.
#include <iostream>
#include <optional>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "clip/preprocess.h"
#include "clip/tokenizer.h"
#include "clip/weights.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "core/text.h"

namespace medsad::cli {
namespace {

struct ClipOptions {
  std::string weights;
  std::string hf_config;
  std::string clip_activation = "auto";
  std::string bpe;
  std::vector<std::string> images;
  std::vector<std::string> texts;
  int64_t image_size = 0;  // 0: the checkpoint's native size
  std::vector<int64_t> block_tokens;
  std::string out;
  int64_t context = 77;
};

int64_t count_parameters(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

nlohmann::json to_json_rows(const torch::Tensor& matrix) {
  nlohmann::json rows = nlohmann::json::array();
  const auto m = matrix.to(torch::kFloat32).contiguous();
  for (int64_t i = 0; i < m.size(0); ++i) {
    const float* row = m[i].data_ptr<float>();
    rows.push_back(std::vector<float>(row, row + m.size(1)));
  }
  return rows;
}

nlohmann::json tokens_to_json(const torch::Tensor& tokens) {
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t i = 0; i < tokens.size(0); ++i) {
    const auto row = tokens[i].contiguous();
    rows.push_back(std::vector<int64_t>(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel()));
  }
  return rows;
}

void run_info(const ClipOptions& o) {
  const auto ckpt = clip::read_clip_checkpoint(o.weights, o.hf_config, o.clip_activation);
  auto model = clip::build_clip_model(ckpt);
  std::cout << "format: " << clip::to_string(ckpt.format) << "\n"
            << ckpt.config.to_string() << "\n"
            << "parameters: image " << count_parameters(*model->visual) << ", text "
            << count_parameters(*model->text) << ", total " << count_parameters(*model) << "\n";
  const bool state_dict = ckpt.format == clip::WeightFormat::TorchPickle ||
                          ckpt.format == clip::WeightFormat::SafetensorsStateDict;
  if (state_dict && o.clip_activation == "auto")
    std::cout << "note: a state dict does not record its activation; QuickGELU is OpenAI's. For open_clip "
                 "weights trained with GELU (LAION, DataComp) give --clip-activation gelu\n";
}

void run_tokenize(const ClipOptions& o) {
  if (o.context < 2 || o.context > 4096)
    fail("", "--context must be between 2 and 4096, got " + std::to_string(o.context));
  const auto tokenizer = clip::Tokenizer::from_bpe_file(o.bpe);
  std::cout << nlohmann::json{{"tokens", tokens_to_json(tokenizer.tokenize_batch(o.texts, o.context))}}.dump()
            << "\n";
}

void run_embed(const ClipOptions& o) {
  if (!o.texts.empty() && o.bpe.empty()) fail("", "--text needs --bpe (the CLIP vocabulary file)");
  if (!o.block_tokens.empty() && o.out.empty()) fail("", "--block-tokens needs --out FILE.safetensors");
  const auto ckpt = clip::read_clip_checkpoint(o.weights, o.hf_config, o.clip_activation);
  const auto& vision = ckpt.config.vision;
  const int64_t size = o.image_size > 0 ? o.image_size : vision.image_size;
  if (size < vision.patch_size || size > 8192)
    fail("", "--image-size must be between the patch size " + std::to_string(vision.patch_size) +
                 " and 8192, got " + std::to_string(size));
  for (int64_t b : o.block_tokens)
    if (b < 1 || b > vision.layers)
      fail("", "--block-tokens " + std::to_string(b) + " is outside the image tower's blocks 1.." +
                   std::to_string(vision.layers));
  std::optional<clip::Tokenizer> tokenizer;
  if (!o.texts.empty()) tokenizer = clip::Tokenizer::from_bpe_file(o.bpe);
  auto model = clip::build_clip_model(ckpt);
  c10::InferenceMode inference;

  nlohmann::json result = {{"tokens", nlohmann::json::array()},
                           {"image_embeddings", nlohmann::json::array()},
                           {"text_embeddings", nlohmann::json::array()}};
  TensorMap block_out;
  constexpr size_t kBatch = 8;  // bounds memory for long image lists
  std::vector<torch::Tensor> embeddings;
  for (size_t start = 0; start < o.images.size(); start += kBatch) {
    std::vector<torch::Tensor> batch;
    for (size_t i = start; i < std::min(o.images.size(), start + kBatch); ++i)
      batch.push_back(clip::load_clip_image(o.images[i], size, ckpt.preprocess));
    const auto taps = model->visual->forward_with_taps(torch::stack(batch), o.block_tokens);
    embeddings.push_back(taps.embedding);
    for (size_t k = 0; k < o.block_tokens.size(); ++k)
      for (int64_t j = 0; j < taps.block_tokens[k].size(0); ++j)
        block_out["image" + std::to_string(start + j + 1) + "_block" + std::to_string(o.block_tokens[k]) +
                  "_tokens"] = taps.block_tokens[k][j].clone();
  }
  if (!embeddings.empty()) result["image_embeddings"] = to_json_rows(torch::cat(embeddings));
  if (tokenizer) {
    const auto tokens = tokenizer->tokenize_batch(o.texts, ckpt.config.text.context_length);
    result["tokens"] = tokens_to_json(tokens);
    result["text_embeddings"] = to_json_rows(model->encode_text(tokens));
  }
  if (!o.out.empty()) write_safetensors(o.out, block_out, {{"image_size", std::to_string(size)}});
  std::cout << json_text(result) << "\n";
}

}  // namespace

void setup_clip_commands(CLI::App& app, Action& action) {
  auto opts = std::make_shared<ClipOptions>();
  auto* clip = app.add_subcommand("clip", "inspect and run a CLIP backbone on its own");
  clip->require_subcommand(1);

  auto* info = clip->add_subcommand("info", "print the architecture inferred from a checkpoint");
  info->add_option("--weights", opts->weights, "CLIP checkpoint (OpenAI .pt, torch.save .pt/.bin, safetensors)")
      ->required();
  info->add_option("--hf-config", opts->hf_config, "Hugging Face config.json (default: found beside the weights)");
  add_clip_activation_option(info, opts->clip_activation);
  info->callback([&action, opts] { action = [opts] { run_info(*opts); }; });

  auto* tok = clip->add_subcommand("tokenize", "print CLIP token ids of texts as JSON");
  tok->add_option("--bpe", opts->bpe, "bpe_simple_vocab_16e6.txt.gz")->required();
  tok->add_option("--text", opts->texts, "text to tokenize (repeatable)")->required();
  tok->add_option("--context", opts->context, "context length (default 77)");
  tok->callback([&action, opts] { action = [opts] { run_tokenize(*opts); }; });

  auto* embed = clip->add_subcommand("embed", "print unnormalised CLIP image and text embeddings as JSON");
  embed->add_option("--weights", opts->weights, "CLIP checkpoint")->required();
  embed->add_option("--hf-config", opts->hf_config, "Hugging Face config.json (default: found beside the weights)");
  add_clip_activation_option(embed, opts->clip_activation);
  embed->add_option("--bpe", opts->bpe, "bpe_simple_vocab_16e6.txt.gz (needed with --text)");
  embed->add_option("--image", opts->images, "image file (repeatable)");
  embed->add_option("--text", opts->texts, "text (repeatable)");
  embed->add_option("--image-size", opts->image_size, "run the image tower at N x N (default: native)")
      ->check(CLI::Range(1, 4096));
  embed->add_option("--block-tokens", opts->block_tokens, "also save the residual stream after block K (1-based)");
  embed->add_option("--out", opts->out, "safetensors file for --block-tokens");
  embed->callback([&action, opts] { action = [opts] { run_embed(*opts); }; });
}

}  // namespace medsad::cli
