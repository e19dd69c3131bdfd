// Text side of MedSAD-CLIP (design doc, Architecture 3): two prompts, normal and abnormal,
//   [SOS] V1..VM <state> <object> . [EOS]
// with M learnable context vectors per class (CoOp), initialised from the token embeddings of
// "a photo of a" padded with small noise; or, with PromptMode::Fixed, the averaged hand-written
// template ensemble (WinCLIP/MVFA). The frozen text tower turns them into per-class global
// embeddings and per-token features (the keys and values of TPCA).
#pragma once
#include <torch/torch.h>

#include "clip/text.h"
#include "clip/tokenizer.h"
#include "model/config.h"

namespace medsad::model {

struct PromptFeatures {
  torch::Tensor global;       // [2, E] L2-normalised: row 0 normal, row 1 abnormal
  torch::Tensor tokens;       // [2L, E] every position of both prompts after ln_final, projected
  torch::Tensor token_valid;  // [2L] bool: true from the start token to the end token
};

struct PromptLearnerImpl : torch::nn::Module {
  // `text` is used, not owned: frozen for CLIP weights (Fixed features then computed once), or
  // trained by its owner when the backbone is trained from scratch.
  PromptLearnerImpl(clip::TextTransformer text, const clip::Tokenizer& tokenizer, const std::string& object,
                    int64_t context_length, PromptMode mode);

  PromptFeatures forward();
  // Computes the features once and keeps them; the text tower is no longer used (inference).
  void freeze_features();

  // Also moves what is not a parameter or buffer: the text tower used, the Fixed ensemble's ids
  // and the cached features.
  using torch::nn::Module::to;
  void to(torch::Device device, bool non_blocking = false) override;

  PromptMode mode;
  int64_t context_length;      // M
  torch::Tensor context;       // [2, M, D_t] learnable (Learned mode only)
  torch::Tensor token_ids;     // [2, L] buffer: placeholders at positions 1..M; L = the longer prompt's
                               // length (padding after both end tokens is dropped: a causal tower)
  torch::Tensor eot_index;     // [2] buffer
  PromptFeatures frozen;       // computed once: Fixed mode with a frozen tower, or after freeze_features

 private:
  PromptFeatures encode(const torch::Tensor& embeddings, const torch::Tensor& eot);
  PromptFeatures encode_fixed();
  clip::TextTransformer text_;
  bool text_trainable_ = false;
  std::vector<torch::Tensor> ensemble_ids_;  // Fixed mode: per class [T, L] template sentences
};
TORCH_MODULE(PromptLearner);

// The hand-written state words and templates of the Fixed ensemble.
std::vector<std::string> fixed_prompts(const std::string& object, bool abnormal);

}  // namespace medsad::model
