// The scratch backbone (--weights none): its convolutional stem against a hand-built reference,
// config JSON round trip, the byte-level tokenizer, and bf16 compute against fp32.
#include "clip/preprocess.h"
#include "clip/scratch.h"
#include "clip/tiny_scratch_options.h"
#include "clip/tokenizer.h"
#include "clip/weights.h"
#include "core/error.h"
#include "test_support.h"

using namespace medsad;
using namespace medsad::clip;

namespace {

double cosine(const torch::Tensor& a, const torch::Tensor& b) {
  return torch::nn::functional::cosine_similarity(a.flatten().unsqueeze(0), b.flatten().unsqueeze(0))
      .item<double>();
}

}  // namespace

TEST(ScratchClip, ConfigHasConvStemAndRoundTripsThroughJson) {
  const auto config = scratch_clip_config(medsad::test::tiny_scratch_options(), 258);
  EXPECT_EQ(config.vision.stem, PatchStem::ConvStack);
  EXPECT_EQ(config.vision.heads, 1);
  EXPECT_EQ(config.text.vocab_size, 258);
  const auto back = ClipConfig::from_json(config.to_json());
  EXPECT_EQ(back.to_json(), config.to_json());
  EXPECT_EQ(back.vision.stem, PatchStem::ConvStack);
  EXPECT_THROW(ClipConfig::from_json(nlohmann::json{{"vision", 1}}), Error);
}

TEST(ScratchClip, AbsurdSizesAreRefused) {
  auto o = medsad::test::tiny_scratch_options();
  o.width = 100;  // not a multiple of 64
  EXPECT_THROW(scratch_clip_config(o, 258), Error);
  o = medsad::test::tiny_scratch_options();
  o.image_size = 36;  // not a multiple of the stem stride
  EXPECT_THROW(scratch_clip_config(o, 258), Error);
  o = medsad::test::tiny_scratch_options();
  o.layers = 0;
  EXPECT_THROW(scratch_clip_config(o, 258), Error);
}

TEST(ScratchClip, ConvStemMatchesHandBuiltConvolutions) {
  torch::manual_seed(3);
  auto model = build_scratch_clip(scratch_clip_config(medsad::test::tiny_scratch_options(), 258));
  auto& visual = *model->visual;
  ASSERT_EQ(visual.stem->size(), 3u);  // patch 8 = three stride-2 convolutions
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({2, 3, 32, 32});
  // Reference: the same three convolutions done by hand as unfolded matrix products.
  auto x = images;
  for (size_t s = 0; s < 3; ++s) {
    const auto& conv = visual.stem[s]->as<torch::nn::Conv2dImpl>();
    const int64_t out_ch = conv->weight.size(0), H = x.size(2) / 2;
    const auto cols = torch::nn::functional::unfold(
        x, torch::nn::functional::UnfoldFuncOptions({3, 3}).stride(2).padding(1));  // [B, C*9, H*H]
    x = (torch::matmul(conv->weight.view({out_ch, -1}), cols) + conv->bias.view({1, out_ch, 1}))
            .view({2, out_ch, H, H});
    if (s < 2) x = 0.5 * x * (1 + torch::erf(x / std::sqrt(2.0)));  // exact GELU
  }
  const auto patches = x.flatten(2).transpose(1, 2);  // [B, 16, D]
  auto tokens = torch::cat({visual.class_embedding.view({1, 1, -1}).expand({2, 1, 64}), patches}, 1);
  tokens = visual.ln_pre(tokens + visual.positional_embedding);
  EXPECT_TRUE(torch::allclose(visual.embed(images), tokens, 1e-4, 1e-5));
}

TEST(ScratchClip, Bf16ComputeAgreesWithFp32) {
  torch::manual_seed(4);
  auto model = build_scratch_clip(scratch_clip_config(medsad::test::tiny_scratch_options(), 258));
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({3, 3, 32, 32});
  const auto fp32 = model->encode_image(images);
  model->set_compute_dtype(torch::kBFloat16);
  const auto bf16 = model->encode_image(images);
  EXPECT_EQ(bf16.scalar_type(), torch::kFloat32);  // outputs stay fp32
  for (int64_t i = 0; i < 3; ++i) EXPECT_GT(cosine(fp32[i], bf16[i]), 0.999);
  EXPECT_FALSE(torch::equal(fp32, bf16));  // bf16 really ran
}

TEST(ScratchClip, Bf16ImageEmbeddingsOfTheFixtureAgreeWithFp32) {
  auto model = load_clip_model(test::fixture("openclip_state_dict.pt"));
  torch::NoGradGuard no_grad;
  const auto images = torch::stack({load_clip_image(test::fixture("image1.png"), 224, ImagePreprocess{}),
                                    load_clip_image(test::fixture("image2.png"), 224, ImagePreprocess{})});
  const auto fp32 = model->encode_image(images);
  model->set_compute_dtype(torch::kBFloat16);
  const auto bf16 = model->encode_image(images);
  for (int64_t i = 0; i < 2; ++i) EXPECT_GT(cosine(fp32[i], bf16[i]), 0.999);
}

TEST(ScratchClip, GradientsReachFp32WeightsThroughBf16Compute) {
  torch::manual_seed(5);
  auto model = build_scratch_clip(scratch_clip_config(medsad::test::tiny_scratch_options(), 258));
  model->set_compute_dtype(torch::kBFloat16);
  model->encode_image(torch::randn({2, 3, 32, 32})).pow(2).sum().backward();
  const auto& stem0 = model->visual->stem[0]->as<torch::nn::Conv2dImpl>()->weight;
  ASSERT_TRUE(stem0.grad().defined());
  EXPECT_EQ(stem0.grad().scalar_type(), torch::kFloat32);
  EXPECT_GT(stem0.grad().abs().sum().item<double>(), 0);
  const auto& fc = model->visual->transformer->blocks[0]->c_fc->weight;
  ASSERT_TRUE(fc.grad().defined());
  EXPECT_GT(fc.grad().abs().sum().item<double>(), 0);
}

TEST(ByteTokenizer, OneIdPerUtf8ByteAfterCleaning) {
  const auto tok = Tokenizer::byte_level();
  EXPECT_TRUE(tok.is_byte_level());
  EXPECT_EQ(tok.vocab_size(), 258);
  EXPECT_EQ(tok.sot_token(), 256);
  EXPECT_EQ(tok.eot_token(), 257);
  // Lower-cased, whitespace collapsed, HTML entities unescaped, as for BPE.
  EXPECT_EQ(tok.encode("  Brain\t MRI &amp; é"),
            (std::vector<int64_t>{'b', 'r', 'a', 'i', 'n', ' ', 'm', 'r', 'i', ' ', '&', ' ', 0xC3, 0xA9}));
  const auto ids = tok.tokenize("abc", 8);
  EXPECT_EQ(ids, (std::vector<int64_t>{256, 'a', 'b', 'c', 257, 0, 0, 0}));
  EXPECT_EQ(tok.tokenize("abcdefghij", 6), (std::vector<int64_t>{256, 'a', 'b', 'c', 'd', 257}));
  EXPECT_EQ(tok.decode(tok.encode("a normal brain mri.")), "a normal brain mri.");
  EXPECT_THROW(tok.token_id("x</w>"), Error);
}
