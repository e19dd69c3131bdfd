#include "model/prompt_learner.h"

#include "core/error.h"

namespace medsad::model {
namespace {

const char* kStates[2] = {"normal", "abnormal"};

// Token ids of one prompt: [SOT] + `prefix` + encode(rest) + [EOT], zero-padded to L.
std::vector<int64_t> prompt_ids(const clip::Tokenizer& tokenizer, const std::vector<int64_t>& prefix,
                                const std::string& rest, int64_t L) {
  std::vector<int64_t> ids{tokenizer.sot_token()};
  ids.insert(ids.end(), prefix.begin(), prefix.end());
  const auto body = tokenizer.encode(rest);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(tokenizer.eot_token());
  if (static_cast<int64_t>(ids.size()) > L)
    fail("", "the prompt for '" + rest + "' needs " + std::to_string(ids.size()) + " tokens, more than the text " +
                 "context of " + std::to_string(L) + ": use a shorter --object or --prompt-length");
  ids.resize(static_cast<size_t>(L), 0);
  return ids;
}

// ids [K, L] cut after the latest end token. The text tower is causal: features up to a prompt's
// end token do not depend on the padding after it, so it is never computed (a 14-token prompt in
// CLIP's 77-token context costs a fifth of the tower).
torch::Tensor drop_padding_after_end(const torch::Tensor& ids) {
  return ids.slice(1, 0, ids.argmax(-1).max().item<int64_t>() + 1);
}

}  // namespace

std::vector<std::string> fixed_prompts(const std::string& object, bool abnormal) {
  static const std::vector<std::string> normal_states = {"normal {}", "healthy {}", "{} without abnormality",
                                                         "{} without lesion", "clean {}"};
  static const std::vector<std::string> abnormal_states = {"abnormal {}", "diseased {}", "{} with abnormality",
                                                           "{} with a lesion", "{} with an anomaly"};
  static const std::vector<std::string> templates = {"a photo of a {}.", "a scan of a {}.", "an image of a {}.",
                                                     "a close-up photo of the {}.", "a medical image of a {}."};
  std::vector<std::string> out;
  for (const auto& state : abnormal ? abnormal_states : normal_states) {
    const std::string phrase = state.substr(0, state.find("{}")) + object + state.substr(state.find("{}") + 2);
    for (const auto& t : templates) out.push_back(t.substr(0, t.find("{}")) + phrase + t.substr(t.find("{}") + 2));
  }
  return out;
}

PromptLearnerImpl::PromptLearnerImpl(clip::TextTransformer text, const clip::Tokenizer& tokenizer,
                                     const std::string& object, int64_t M, PromptMode mode_)
    : mode(mode_), context_length(M), text_(std::move(text)) {
  text_trainable_ = text_->token_embedding->weight.requires_grad();
  const int64_t L = text_->config.context_length;
  torch::NoGradGuard no_grad;
  if (mode == PromptMode::Fixed) {
    // Canonical sentence per class for the token features; global = mean of the normalised ensemble.
    std::vector<std::vector<int64_t>> canonical;
    for (int c = 0; c < 2; ++c) {
      std::vector<torch::Tensor> rows;
      for (const auto& sentence : fixed_prompts(object, c == 1))
        rows.push_back(torch::tensor(prompt_ids(tokenizer, {}, sentence, L)));
      ensemble_ids_.push_back(drop_padding_after_end(torch::stack(rows)));  // [T, L]
      canonical.push_back(prompt_ids(tokenizer, {}, std::string("a photo of a ") + kStates[c] + " " + object + ".", L));
    }
    token_ids = register_buffer(
        "token_ids", drop_padding_after_end(torch::stack({torch::tensor(canonical[0]), torch::tensor(canonical[1])})));
    eot_index = register_buffer("eot_index", token_ids.argmax(-1));
    if (!text_trainable_) frozen = encode_fixed();
    return;
  }
  const int64_t placeholder = tokenizer.encode("x").front();  // any id: replaced by the context vectors
  const std::vector<int64_t> prefix(static_cast<size_t>(M), placeholder);
  std::vector<torch::Tensor> rows;
  for (int c = 0; c < 2; ++c)
    rows.push_back(torch::tensor(prompt_ids(tokenizer, prefix, std::string(kStates[c]) + " " + object + ".", L)));
  token_ids = register_buffer("token_ids", drop_padding_after_end(torch::stack(rows)));  // [2, L]
  eot_index = register_buffer("eot_index", token_ids.argmax(-1));

  // "a photo of a" at the end of the context, small noise before it where M is longer.
  const auto phrase_ids = torch::tensor(tokenizer.encode("a photo of a"));
  const auto phrase = text_->token_embedding(phrase_ids);  // [n, D]
  const int64_t n = std::min<int64_t>(phrase.size(0), M), D = phrase.size(1);
  auto init = torch::randn({M, D}) * 0.02;
  init.slice(0, M - n, M) += phrase.slice(0, phrase.size(0) - n);
  context = register_parameter("context", init.unsqueeze(0).repeat({2, 1, 1}).contiguous());  // [2, M, D]
}

PromptFeatures PromptLearnerImpl::encode(const torch::Tensor& embeddings, const torch::Tensor& eot) {
  const auto feats = text_->encode_embeddings(embeddings, eot);  // global [2, E], tokens [2, L, E]
  PromptFeatures out;
  const int64_t L = embeddings.size(1);
  out.global = torch::nn::functional::normalize(feats.global, torch::nn::functional::NormalizeFuncOptions().dim(-1));
  out.tokens = feats.tokens.reshape({2 * L, -1});                                           // [2L, E]
  out.token_valid = (torch::arange(L, eot.options()).view({1, L}) <= eot.view({2, 1})).reshape({2 * L});  // [2L]
  return out;
}

PromptFeatures PromptLearnerImpl::encode_fixed() {
  namespace F = torch::nn::functional;
  std::vector<torch::Tensor> globals;
  for (const auto& ids : ensemble_ids_) {
    const auto feats = text_->encode_embeddings(text_->token_embedding(ids), ids.argmax(-1)).global;  // [T, E]
    globals.push_back(F::normalize(feats, F::NormalizeFuncOptions().dim(-1)).mean(0));
  }
  auto out = encode(text_->token_embedding(token_ids), eot_index);
  out.global = F::normalize(torch::stack(globals), F::NormalizeFuncOptions().dim(-1));  // [2, E]
  return out;
}

PromptFeatures PromptLearnerImpl::forward() {
  if (frozen.global.defined()) return frozen;
  if (mode == PromptMode::Fixed) return encode_fixed();
  const auto frozen = text_->token_embedding(token_ids);  // [2, L, D]; trains only with a scratch text tower
  const int64_t M = context_length;
  auto embeddings = torch::cat({frozen.slice(1, 0, 1), context, frozen.slice(1, 1 + M)}, 1);  // [2, L, D]
  return encode(embeddings, eot_index);
}

void PromptLearnerImpl::to(torch::Device device, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
  if (text_) text_->to(device, non_blocking);
  for (auto& ids : ensemble_ids_) ids = ids.to(device, non_blocking);
  for (auto* t : {&frozen.global, &frozen.tokens, &frozen.token_valid})
    if (t->defined()) *t = t->to(device, non_blocking);
}

void PromptLearnerImpl::freeze_features() {
  torch::NoGradGuard no_grad;
  frozen = forward();
  text_ = nullptr;
}

}  // namespace medsad::model
