// The scratch backbone (--weights none): both convolutional stems against hand-built references,
// config JSON round trip, the byte-level tokenizer, bf16 compute against fp32, and the sine-cosine
// start of the position embeddings against its formula.
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

// 3x3 convolution with padding 1 as an unfolded matrix product: x [B, C, H, W], weight [O, C, 3, 3].
torch::Tensor reference_conv3x3(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                int64_t stride) {
  const int64_t B = x.size(0), O = weight.size(0), H = (x.size(2) - 1) / stride + 1, W = (x.size(3) - 1) / stride + 1;
  const auto cols = torch::nn::functional::unfold(
      x, torch::nn::functional::UnfoldFuncOptions({3, 3}).stride(stride).padding(1));  // [B, C*9, H*W]
  return (torch::matmul(weight.view({O, -1}), cols) + bias.view({1, O, 1})).view({B, O, H, W});
}

torch::Tensor exact_gelu(const torch::Tensor& x) { return 0.5 * x * (1 + torch::erf(x / std::sqrt(2.0))); }

// GroupNorm by its definition: per sample and group of C/groups channels, (x - mean) / sqrt(var + eps)
// with the biased variance, then a per-channel affine.
torch::Tensor reference_group_norm(const torch::Tensor& x, int64_t groups, const torch::Tensor& gamma,
                                   const torch::Tensor& beta) {
  const int64_t B = x.size(0), C = x.size(1);
  const auto g = x.reshape({B, groups, -1});
  const auto mean = g.mean(-1, true), var = (g - mean).pow(2).mean(-1, true);
  const auto y = ((g - mean) / torch::sqrt(var + 1e-5)).view(x.sizes());
  return y * gamma.view({1, C, 1, 1}) + beta.view({1, C, 1, 1});
}

// The tokens embed() should produce from stem output x [B, D, g, g].
torch::Tensor reference_tokens(VisionTransformerImpl& visual, const torch::Tensor& x) {
  const int64_t B = x.size(0), D = x.size(1);
  const auto patches = x.flatten(2).transpose(1, 2);  // [B, g*g, D]
  auto tokens = torch::cat({visual.class_embedding.view({1, 1, -1}).expand({B, 1, D}), patches}, 1);
  return visual.ln_pre(tokens + visual.positional_embedding);
}

}  // namespace

TEST(ScratchClip, ConfigRoundTripsThroughJsonWithEitherStem) {
  EXPECT_EQ(scratch_clip_config(medsad::test::tiny_scratch_options(), 258).vision.stem, PatchStem::ConvStack);
  const auto config = scratch_clip_config(medsad::test::tiny_encoder_scratch_options(), 258);
  EXPECT_EQ(config.vision.stem, PatchStem::ConvEncoder);
  EXPECT_EQ(config.vision.heads, 1);
  EXPECT_EQ(config.text.vocab_size, 258);
  const auto back = ClipConfig::from_json(config.to_json());
  EXPECT_EQ(back.to_json(), config.to_json());
  EXPECT_EQ(back.vision.stem, PatchStem::ConvEncoder);
  EXPECT_EQ(back.vision.stem_channels, config.vision.stem_channels);
  // A config written before the encoder stem existed (no stem_channels) still reads.
  auto old = config.to_json();
  old["vision"]["stem"] = "conv_stack";
  old["vision"].erase("stem_channels");
  EXPECT_EQ(ClipConfig::from_json(old).vision.stem, PatchStem::ConvStack);
  old["vision"]["stem"] = "resnet";
  EXPECT_THROW(ClipConfig::from_json(old), Error);
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
  o = medsad::test::tiny_encoder_scratch_options();
  o.stem_channels = 12;  // GroupNorm's 8 groups do not divide it
  EXPECT_THROW(scratch_clip_config(o, 258), Error);
  o = medsad::test::tiny_scratch_options();
  o.stem = PatchStem::Conv;  // a single patch convolution is what the scratch backbone avoids
  EXPECT_THROW(scratch_clip_config(o, 258), Error);
}

TEST(ScratchClip, ConvStackStemMatchesHandBuiltConvolutions) {
  torch::manual_seed(3);
  auto model = build_scratch_clip(scratch_clip_config(medsad::test::tiny_scratch_options(), 258));
  auto& visual = *model->visual;
  ASSERT_EQ(visual.stem->size(), 3u);  // patch 8 = three stride-2 convolutions
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({2, 3, 32, 32});
  auto x = images;
  for (size_t s = 0; s < 3; ++s) {
    const auto& conv = visual.stem[s]->as<torch::nn::Conv2dImpl>();
    x = reference_conv3x3(x, conv->weight, conv->bias, 2);
    if (s < 2) x = exact_gelu(x);
  }
  EXPECT_TRUE(torch::allclose(visual.embed(images), reference_tokens(visual, x), 1e-4, 1e-5));
}

TEST(ScratchClip, ConvEncoderStemMatchesHandBuiltConvolutionsAndGroupNorms) {
  torch::manual_seed(6);
  auto model = build_scratch_clip(scratch_clip_config(medsad::test::tiny_encoder_scratch_options(), 258));
  auto& visual = *model->visual;
  ASSERT_EQ(visual.encoder->size(), 3u);  // patch 8: stages at 32, 16 and 8 px, then the stride-2 projection
  torch::NoGradGuard no_grad;
  for (auto& p : visual.encoder->parameters())  // non-trivial affines, so the test sees them used
    if (p.dim() == 1) p.uniform_(0.5, 1.5);
  const auto images = torch::randn({2, 3, 32, 32});
  auto x = images;
  int64_t channels = 16;
  for (size_t s = 0; s < 3; ++s, channels *= 2) {
    const auto& stage = *visual.encoder[s]->as<ConvEncoderStageImpl>();
    ASSERT_EQ(stage.conv1->weight.size(0), channels);
    x = reference_conv3x3(x, stage.conv1->weight, stage.conv1->bias, s == 0 ? 1 : 2);
    x = exact_gelu(reference_group_norm(x, 8, stage.norm1->weight, stage.norm1->bias));
    x = reference_conv3x3(x, stage.conv2->weight, stage.conv2->bias, 1);
    x = exact_gelu(reference_group_norm(x, 8, stage.norm2->weight, stage.norm2->bias));
  }
  x = reference_conv3x3(x, visual.encoder_proj->weight, visual.encoder_proj->bias, 2);  // [2, 64, 4, 4]
  EXPECT_TRUE(torch::allclose(visual.embed(images), reference_tokens(visual, x), 1e-4, 1e-5));
}

TEST(ScratchClip, Bf16AgreesWithFp32ForEitherStem) {
  for (const auto& options : {medsad::test::tiny_scratch_options(), medsad::test::tiny_encoder_scratch_options()}) {
    torch::manual_seed(4);
    auto model = build_scratch_clip(scratch_clip_config(options, 258));
    torch::NoGradGuard no_grad;
    const auto images = torch::randn({3, 3, 32, 32});
    const auto fp32 = model->encode_image(images);
    model->set_compute_dtype(torch::kBFloat16);
    const auto bf16 = model->encode_image(images);
    EXPECT_EQ(bf16.scalar_type(), torch::kFloat32);  // outputs stay fp32
    EXPECT_FALSE(torch::equal(fp32, bf16));          // bf16 really ran
    // Inference stores the matrices in bf16 once; the encoder's GroupNorms stay fp32.
    model->store_matrices_in(torch::kBFloat16);
    const auto stored = model->encode_image(images);
    if (options.stem == PatchStem::ConvEncoder) {
      const auto& stage = *model->visual->encoder[0]->as<ConvEncoderStageImpl>();
      EXPECT_EQ(stage.conv1->weight.scalar_type(), torch::kBFloat16);
      EXPECT_EQ(model->visual->encoder_proj->weight.scalar_type(), torch::kBFloat16);
      EXPECT_EQ(stage.norm1->weight.scalar_type(), torch::kFloat32);
    }
    for (int64_t i = 0; i < 3; ++i) {
      EXPECT_GT(cosine(fp32[i], bf16[i]), 0.999);
      EXPECT_GT(cosine(fp32[i], stored[i]), 0.999);
    }
  }
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
  for (const auto& options : {medsad::test::tiny_scratch_options(), medsad::test::tiny_encoder_scratch_options()}) {
    torch::manual_seed(5);
    auto model = build_scratch_clip(scratch_clip_config(options, 258));
    model->set_compute_dtype(torch::kBFloat16);
    model->encode_image(torch::randn({2, 3, 32, 32})).pow(2).sum().backward();
    auto& visual = *model->visual;
    std::vector<torch::Tensor> stem_weights;  // the first convolution, and the encoder's GroupNorm scale
    if (options.stem == PatchStem::ConvStack) {
      stem_weights = {visual.stem[0]->as<torch::nn::Conv2dImpl>()->weight};
    } else {
      const auto& stage = *visual.encoder[0]->as<ConvEncoderStageImpl>();
      stem_weights = {stage.conv1->weight, stage.norm1->weight};
    }
    for (const auto& w : stem_weights) {
      ASSERT_TRUE(w.grad().defined());
      EXPECT_EQ(w.grad().scalar_type(), torch::kFloat32);
      EXPECT_GT(w.grad().abs().sum().item<double>(), 0);
    }
    const auto& fc = visual.transformer->blocks[0]->c_fc->weight;
    ASSERT_TRUE(fc.grad().defined());
    EXPECT_GT(fc.grad().abs().sum().item<double>(), 0);
  }
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

TEST(ScratchClip, SineCosinePositionsFollowMaesFormula) {
  for (const auto& [grid, width] : {std::pair<int64_t, int64_t>{4, 16}, {16, 192}, {3, 64}}) {
    const auto table = sine_cosine_positions(grid, width);
    ASSERT_EQ(table.sizes(), torch::IntArrayRef({grid * grid, width}));
    const int64_t q = width / 4;
    auto expected = torch::empty({grid * grid, width}, torch::kFloat64);
    for (int64_t r = 0; r < grid; ++r)
      for (int64_t c = 0; c < grid; ++c)
        for (int64_t k = 0; k < q; ++k) {
          const double w = std::pow(10000.0, -static_cast<double>(k) / static_cast<double>(q));
          const int64_t token = r * grid + c;
          expected[token][k] = std::sin(static_cast<double>(r) * w);
          expected[token][q + k] = std::cos(static_cast<double>(r) * w);
          expected[token][2 * q + k] = std::sin(static_cast<double>(c) * w);
          expected[token][3 * q + k] = std::cos(static_cast<double>(c) * w);
        }
    EXPECT_TRUE(torch::allclose(table.to(torch::kFloat64), expected, 0, 1e-6)) << grid << "x" << width;
  }
  EXPECT_THROW((void)sine_cosine_positions(4, 18), c10::Error);
}

TEST(ScratchClip, SineCosineStartChangesOnlyTheImagePositions) {
  // Both starts draw the same random numbers: with one seed, every other tensor is the same.
  const auto config = scratch_clip_config(medsad::test::tiny_encoder_scratch_options(), 258);
  torch::manual_seed(11);
  auto random = build_scratch_clip(config);
  torch::manual_seed(11);
  auto sincos = build_scratch_clip(config, PositionInit::SineCosine);
  const auto positions = sincos->visual->positional_embedding;  // [1 + 16, 64]: 32 px, patch 8
  EXPECT_TRUE(torch::equal(positions[0], torch::zeros({64})));
  EXPECT_TRUE(torch::equal(positions.slice(0, 1), sine_cosine_positions(4, 64)));
  EXPECT_FALSE(torch::allclose(random->visual->positional_embedding.slice(0, 1), sine_cosine_positions(4, 64),
                               0, 0.1));
  const auto a = random->named_parameters(), b = sincos->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) {
    if (item.key() == "visual.positional_embedding") continue;
    EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  }
  EXPECT_EQ(position_init_name(PositionInit::SineCosine), "sincos");
  EXPECT_EQ(position_init_name(PositionInit::Random), "random");
}
