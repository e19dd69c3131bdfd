// MedSAD-CLIP's parts: adapters, prompt assembly and gradient flow, TPCA masking and a
// brute-force attention reference, the whole model's shapes and frozen backbone.
#include "clip/tokenizer.h"
#include "clip/weights.h"
#include "core/error.h"
#include "model/adapter.h"
#include "model/medsad_clip.h"
#include "model/prompt_learner.h"
#include "model/token_patch_cross_attention.h"
#include "test_support.h"

using namespace medsad;
using namespace medsad::model;

namespace {

struct Fixture {
  clip::ClipModel clip{nullptr};
  std::optional<clip::Tokenizer> tokenizer;
  Fixture() {
    clip = clip::load_clip_model(test::fixture("openclip_state_dict.pt"));
    tokenizer = clip::Tokenizer::from_bpe_file(test::bpe_path());
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

MedSadConfig small_config() {
  MedSadConfig c;
  c.object = "brain MRI";
  c.resolve(4, 224, 16);
  c.image_size = 64;  // 4 x 4 patches keeps the tests fast
  return c;
}

}  // namespace

TEST(ModelAdapter, ShapesAndLeakyReluBottleneck) {
  ImageAdapter adapter(6, 4);
  const auto z = torch::randn({2, 5, 6});
  const auto out = adapter->forward(z);
  ASSERT_EQ(out.hidden.sizes(), torch::IntArrayRef({2, 5, 4}));
  ASSERT_EQ(out.residual.sizes(), torch::IntArrayRef({2, 5, 6}));
  const auto h = torch::matmul(z, adapter->down->weight.t());
  const auto expected_h = torch::where(h > 0, h, 0.01 * h);  // LeakyReLU, slope 0.01
  EXPECT_TRUE(torch::allclose(out.hidden, expected_h, 1e-6, 1e-6));
  const auto r = torch::matmul(expected_h, adapter->up->weight.t());
  EXPECT_TRUE(torch::allclose(out.residual, torch::where(r > 0, r, 0.01 * r), 1e-6, 1e-6));
}

TEST(ModelConfig, DefaultTapBlocksAreEvenlySpacedWithTheLast) {
  EXPECT_EQ(default_tap_blocks(12), (std::vector<int64_t>{3, 6, 9, 12}));
  EXPECT_EQ(default_tap_blocks(24), (std::vector<int64_t>{6, 12, 18, 24}));
  EXPECT_EQ(default_tap_blocks(4), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(default_tap_blocks(3), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(default_tap_blocks(6), (std::vector<int64_t>{2, 3, 5, 6}));
  // Given ones: within the backbone, increasing, each once.
  for (const std::vector<int64_t>& bad : {std::vector<int64_t>{0, 2}, {2, 5}, {2, 2}, {3, 1}}) {
    MedSadConfig config;
    config.object = "brain MRI";
    config.tap_blocks = bad;
    EXPECT_THROW(config.resolve(4, 224, 16), Error) << bad;
  }
  MedSadConfig given;
  given.object = "brain MRI";
  given.tap_blocks = {1, 3};
  EXPECT_NO_THROW(given.resolve(4, 224, 16));
  // An input size the backbone's patches do not tile.
  given.image_size = 100;
  EXPECT_THROW(given.resolve(4, 224, 16), Error);
  given.image_size = 96;
  EXPECT_NO_THROW(given.resolve(4, 224, 16));
  given.object = "\xff brain";  // the prompts' text must be text
  EXPECT_THROW(given.resolve(4, 224, 16), Error);
}

TEST(ModelPrompts, AssemblyPutsContextThenStateObjectAndEnd) {
  auto& f = fixture();
  PromptLearner learner(f.clip->text, *f.tokenizer, "brain MRI", 8, PromptMode::Learned);
  const auto ids = learner->token_ids;
  const auto normal_body = f.tokenizer->encode("normal brain MRI.");
  const auto abnormal_body = f.tokenizer->encode("abnormal brain MRI.");
  // Cut after the longer prompt's end token: the padding after it cannot change a causal tower's output.
  ASSERT_EQ(ids.sizes(), torch::IntArrayRef({2, 10 + static_cast<int64_t>(abnormal_body.size())}));
  for (int c = 0; c < 2; ++c) {
    const auto& body = c == 0 ? normal_body : abnormal_body;
    EXPECT_EQ(ids[c][0].item<int64_t>(), f.tokenizer->sot_token());
    for (int i = 1; i <= 8; ++i) EXPECT_EQ(ids[c][i].item<int64_t>(), f.tokenizer->token_id("x</w>"));
    for (size_t i = 0; i < body.size(); ++i) EXPECT_EQ(ids[c][9 + static_cast<int64_t>(i)].item<int64_t>(), body[i]);
    EXPECT_EQ(learner->eot_index[c].item<int64_t>(), 9 + static_cast<int64_t>(body.size()));
  }
  // Context initialised from "a photo of a" (last 4 vectors), up to the small noise.
  const auto phrase = f.clip->text->token_embedding(torch::tensor(f.tokenizer->encode("a photo of a")));
  EXPECT_LT((learner->context[0].slice(0, 4) - phrase).abs().max().item<float>(), 0.15);
  EXPECT_LT(learner->context[0].slice(0, 0, 4).abs().max().item<float>(), 0.15);
}

TEST(ModelPrompts, FeaturesEqualThoseOfTheFullPaddedContext) {
  auto& f = fixture();
  torch::NoGradGuard no_grad;
  PromptLearner learner(f.clip->text, *f.tokenizer, "brain MRI", 8, PromptMode::Learned);
  const auto got = learner->forward();
  // Reference: the same prompts padded to the tower's whole 77-token context, as CLIP encodes text.
  auto text = f.clip->text;  // a holder copy: calling its modules needs a non-const one
  const int64_t L = learner->token_ids.size(1), M = 8;
  auto ids = torch::zeros({2, text->config.context_length}, torch::kInt64);
  ids.slice(1, 0, L).copy_(learner->token_ids);
  const auto embedded = text->token_embedding(ids);  // [2, 77, D]
  const auto embeddings = torch::cat({embedded.slice(1, 0, 1), learner->context, embedded.slice(1, 1 + M)}, 1);
  const auto full = text->encode_embeddings(embeddings, learner->eot_index);
  const auto global = torch::nn::functional::normalize(full.global, torch::nn::functional::NormalizeFuncOptions().dim(-1));
  EXPECT_TRUE(torch::allclose(got.global, global, 1e-5, 1e-6));
  for (int64_t c = 0; c < 2; ++c) {
    const int64_t valid = learner->eot_index[c].item<int64_t>() + 1;
    EXPECT_TRUE(torch::allclose(got.tokens.slice(0, c * L, c * L + valid), full.tokens[c].slice(0, 0, valid), 1e-5, 1e-5));
    EXPECT_TRUE(got.token_valid.slice(0, c * L, c * L + valid).all().item<bool>());
    EXPECT_FALSE(got.token_valid.slice(0, c * L + valid, (c + 1) * L).any().item<bool>());
  }
}

TEST(ModelPrompts, GradientReachesTheContextVectorsOnly) {
  auto& f = fixture();
  for (auto& p : f.clip->parameters()) p.set_requires_grad(false);
  PromptLearner learner(f.clip->text, *f.tokenizer, "chest X-ray", 4, PromptMode::Learned);
  ASSERT_EQ(learner->parameters().size(), 1u);  // the context, nothing else trainable
  const auto feats = learner->forward();
  (feats.global[1] * torch::randn_like(feats.global[1])).sum().backward();
  ASSERT_TRUE(learner->context.grad().defined());
  EXPECT_GT(learner->context.grad().abs().sum().item<float>(), 0.0f);
  for (const auto& p : f.clip->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(ModelPrompts, FixedEnsembleAveragesTemplates) {
  auto& f = fixture();
  torch::NoGradGuard no_grad;
  PromptLearner learner(f.clip->text, *f.tokenizer, "brain MRI", 8, PromptMode::Fixed);
  EXPECT_TRUE(learner->parameters().empty());
  const auto sentences = fixed_prompts("brain MRI", true);
  ASSERT_EQ(sentences.size(), 25u);
  EXPECT_EQ(sentences[0], "a photo of a abnormal brain MRI.");
  const auto ids = f.tokenizer->tokenize_batch(sentences);
  auto expected = torch::nn::functional::normalize(f.clip->encode_text(ids),
                                                   torch::nn::functional::NormalizeFuncOptions().dim(-1))
                      .mean(0);
  expected = expected / expected.norm();
  EXPECT_TRUE(torch::allclose(learner->forward().global[1], expected, 1e-5, 1e-5));
}

TEST(ModelTpca, MatchesBruteForceAttentionAndMasksPadding) {
  torch::manual_seed(3);
  TokenPatchCrossAttention tpca(8, 2);
  torch::NoGradGuard no_grad;
  const auto patches = torch::randn({2, 5, 8});
  auto tokens = torch::randn({6, 8});
  const auto valid = torch::tensor({1, 1, 1, 0, 1, 0}).to(torch::kBool);
  const auto out = tpca->forward(patches, tokens, valid);
  ASSERT_EQ(out.sizes(), torch::IntArrayRef({2, 5, 8}));

  // Brute force: per batch, patch, head, a softmax over the valid tokens only.
  const auto q = tpca->q_proj(patches), k = tpca->k_proj(tokens), v = tpca->v_proj(tokens);
  auto attended = torch::zeros({2, 5, 8});
  for (int b = 0; b < 2; ++b)
    for (int n = 0; n < 5; ++n)
      for (int h = 0; h < 2; ++h) {
        std::vector<double> w;
        double total = 0;
        for (int s = 0; s < 6; ++s) {
          const double logit = (q[b][n].slice(0, 4 * h, 4 * h + 4) * k[s].slice(0, 4 * h, 4 * h + 4)).sum().item<double>() / 2.0;
          w.push_back(valid[s].item<bool>() ? std::exp(logit) : 0.0);
          total += w.back();
        }
        for (int s = 0; s < 6; ++s)
          attended[b][n].slice(0, 4 * h, 4 * h + 4) += (w[s] / total) * v[s].slice(0, 4 * h, 4 * h + 4);
      }
  const auto expected = tpca->norm(patches + tpca->out_proj(attended));
  EXPECT_TRUE(torch::allclose(out, expected, 1e-5, 1e-5));

  // Padding cannot leak: changing masked tokens changes nothing, changing a valid one does.
  auto changed = tokens.clone();
  changed[3] += 10.0;
  changed[5] -= 10.0;
  EXPECT_TRUE(torch::allclose(tpca->forward(patches, changed, valid), out));
  changed[0] += 1.0;
  EXPECT_FALSE(torch::allclose(tpca->forward(patches, changed, valid), out));
}

// bf16 compute (products in bf16, weights fp32) against the fp32 path, at the demo
// model's size: 256 patches, 66 valid prompt tokens of 80, joint width 128, 8 heads. Inputs are
// scaled so the attention is far from uniform, and the comparison is of what attention adds to
// the patches (out - LN(patches)): LN(patches) alone would hide an error in it.
TEST(ModelTpca, Bf16AgreesWithFp32AtTheDemoSize) {
  torch::manual_seed(4);
  TokenPatchCrossAttention tpca(128, 8);
  const auto patches = (3 * torch::randn({4, 256, 128})).requires_grad_();
  const auto tokens = 3 * torch::randn({80, 128});
  const auto valid = torch::arange(80) < 66;
  const auto added = [&] { return tpca->forward(patches, tokens, valid) - tpca->norm(patches); };
  const auto reference = added();
  const auto reference_grad = torch::autograd::grad({reference.pow(2).sum()}, {patches})[0];
  tpca->compute_dtype = torch::kBFloat16;
  const auto out = added();
  ASSERT_EQ(out.scalar_type(), torch::kFloat32);
  const auto grad = torch::autograd::grad({out.pow(2).sum()}, {patches})[0];
  const auto row_cosine = torch::cosine_similarity(out.flatten(0, 1), reference.flatten(0, 1), 1);
  EXPECT_GT(row_cosine.min().item<double>(), 0.99);
  EXPECT_GT(torch::cosine_similarity(out.flatten(), reference.flatten(), 0).item<double>(), 0.999);
  EXPECT_GT(torch::cosine_similarity(grad.flatten(), reference_grad.flatten(), 0).item<double>(), 0.999);
}

TEST(ModelMedSad, OutputsHaveDesignShapesAndOnlyNewPartsTrain) {
  auto& f = fixture();
  MedSadClip model(f.clip, *f.tokenizer, small_config());
  const auto images = torch::randn({3, 3, 64, 64});
  const auto out = model->forward(images, /*smooth=*/true);
  ASSERT_EQ(out.level_maps.size(), 4u);
  EXPECT_EQ(out.level_maps[0].sizes(), torch::IntArrayRef({3, 64, 64}));
  EXPECT_TRUE(torch::allclose(out.level_maps[0], torch::sigmoid(out.level_logits[0])));
  EXPECT_TRUE(torch::allclose(out.p_det, torch::softmax(out.det_logits, 1).select(1, 1), 1e-5, 1e-6));
  EXPECT_EQ(out.anomaly_map.sizes(), torch::IntArrayRef({3, 64, 64}));
  EXPECT_EQ(out.p_det.sizes(), torch::IntArrayRef({3}));
  EXPECT_EQ(out.score.sizes(), torch::IntArrayRef({3}));
  EXPECT_GE(out.anomaly_map.min().item<float>(), 0.0f);
  EXPECT_LE(out.anomaly_map.max().item<float>(), 1.0f);
  EXPECT_NEAR(out.global.norm(2, 1).mean().item<float>(), 1.0f, 1e-5);
  // The score is the design's mix of Det and the top 1% of the Seg map (41 of 4096 pixels).
  const auto top = std::get<0>(out.anomaly_map.flatten(1).topk(41, 1)).mean(1);
  EXPECT_TRUE(torch::allclose(out.score, 0.5 * out.p_det + 0.5 * top, 1e-5, 1e-6));
  // Trainable: 2 x 4 adapters (2 matrices each), 4 TPCA (4 linear + LN), prompt context.
  int64_t trainable = 0;
  for (const auto& p : model->parameters()) trainable += p.requires_grad();
  EXPECT_EQ(trainable, 8 * 2 + 4 * (4 * 2 + 2) + 1);
  for (const auto& p : f.clip->parameters()) EXPECT_FALSE(p.requires_grad());
}

TEST(ModelMedSad, PrepareForInferenceKeepsOutputsAndReleasesTheTextTower) {
  auto& f = fixture();
  // Its own backbone: preparing releases the text tower of the CLIP it is given.
  auto clip = clip::load_clip_model(test::fixture("openclip_state_dict.pt"));
  MedSadClip model(clip, *f.tokenizer, small_config());
  model->eval();
  const auto images = torch::randn({2, 3, 64, 64});
  torch::Tensor before;
  {
    torch::NoGradGuard no_grad;
    before = model->forward(images, true).anomaly_map;
  }
  model->prepare_for_inference(torch::kFloat32);
  EXPECT_FALSE(clip->text);
  for (const auto& p : clip->named_parameters()) EXPECT_NE(p.key().rfind("text.", 0), 0u) << p.key();
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.requires_grad());
  const auto after = model->forward(images, true);
  EXPECT_TRUE(torch::allclose(before, after.anomaly_map, 1e-5, 1e-6));
  EXPECT_FALSE(after.anomaly_map.requires_grad());
  // bf16: the backbone's matrices now stored in bf16, the map close to the fp32 one.
  model->prepare_for_inference(torch::kBFloat16);
  for (const auto& p : clip->matrix_parameters()) EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
  const auto bf16 = model->forward(images, true).anomaly_map;
  EXPECT_LT((bf16 - before).abs().max().item<float>(), 0.05f);
  EXPECT_FALSE(torch::equal(bf16, before));
}

TEST(ModelMedSad, AblationsRemoveTheirParts) {
  auto& f = fixture();
  auto config = small_config();
  config.use_adapters = false;
  config.use_tpca = false;
  config.prompts = PromptMode::Fixed;
  MedSadClip model(f.clip, *f.tokenizer, config);
  EXPECT_TRUE(model->parameters().empty());  // the zero-shot CLIP baseline trains nothing
  torch::NoGradGuard no_grad;
  const auto out = model->forward(torch::randn({1, 3, 64, 64}));
  EXPECT_EQ(out.anomaly_map.sizes(), torch::IntArrayRef({1, 64, 64}));
}

TEST(ModelMedSad, GaussianSmoothingKeepsMassAndShape) {
  auto maps = torch::zeros({1, 21, 21});
  maps[0][10][10] = 1.0;
  const auto smoothed = gaussian_smooth(maps, 2.0);
  EXPECT_EQ(smoothed.sizes(), maps.sizes());
  EXPECT_NEAR(smoothed.sum().item<float>(), 1.0f, 1e-4);
  EXPECT_NEAR(smoothed[0][10][10].item<float>(), 1.0 / (2 * M_PI * 4.0), 2e-3);  // 2-D Gaussian peak
}

TEST(ModelMedSad, AdaptersMixTheirResidualsIntoTheStream) {
  // Recompute the Det branch's global feature by hand: the level-2 adapters must see
  // block2((1 - 2b) z1 + b r_seg + b r_det), not the plain CLIP stream.
  auto& f = fixture();
  auto config = small_config();
  config.tap_blocks = {1, 2};
  config.use_tpca = false;
  config.adapter_beta = 0.1;
  MedSadClip model(f.clip, *f.tokenizer, config);
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({2, 3, 64, 64});
  const auto out = model->forward(images);
  auto seg = [&](size_t i) { return model->seg_adapters[i]->as<ImageAdapterImpl>(); };
  auto det = [&](size_t i) { return model->det_adapters[i]->as<ImageAdapterImpl>(); };
  auto& visual = f.clip->visual;
  auto z = visual->transformer->blocks[0](visual->embed(images));
  const auto d1 = det(0)->forward(z);
  z = 0.8 * z + 0.1 * seg(0)->forward(z).residual + 0.1 * d1.residual;
  z = visual->transformer->blocks[1](z);
  const auto d2 = det(1)->forward(z);
  auto g = (d1.hidden.select(1, 0) + d2.hidden.select(1, 0)) / 2;
  g = g / g.norm(2, 1, true);
  EXPECT_TRUE(torch::allclose(out.global, g, 1e-5, 1e-6));
  // Without the mix (beta 0) the second level sees the plain stream, and g differs.
  model->config.adapter_beta = 0.0;
  EXPECT_FALSE(torch::allclose(model->forward(images).global, g, 1e-5, 1e-6));
}
