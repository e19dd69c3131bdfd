// The CLIP towers against outputs of the public reference code (shared/fixtures/clip-tiny),
// for every weight format: the same function, within 1e-4 absolute.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "clip/preprocess.h"
#include "clip/weights.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "test_support.h"

using namespace medsad;
using namespace medsad::clip;

namespace {

constexpr double kTolerance = 1e-4;

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

class ClipParity : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    reference = read_safetensors(test::fixture("reference.safetensors"));
    info = nlohmann::json::parse(read_file_text(test::fixture("reference.json")));
    checkpoint = read_clip_checkpoint(test::fixture(GetParam()));
    model = build_clip_model(checkpoint);
  }
  torch::Tensor images(const std::string& suffix, int64_t size) {
    return torch::stack({load_clip_image(test::fixture("image1" + suffix + ".png"), size, checkpoint.preprocess),
                         load_clip_image(test::fixture("image2" + suffix + ".png"), size, checkpoint.preprocess)});
  }
  TensorMap reference;
  nlohmann::json info;
  ClipCheckpoint checkpoint;
  ClipModel model{nullptr};
};

}  // namespace

TEST_P(ClipParity, ArchitectureIsInferredFromShapes) {
  const auto& c = checkpoint.config;
  EXPECT_EQ(c.vision.width, info["vision"]["width"].get<int64_t>());
  EXPECT_EQ(c.vision.layers, info["vision"]["layers"].get<int64_t>());
  EXPECT_EQ(c.vision.patch_size, info["vision"]["patch"].get<int64_t>());
  EXPECT_EQ(c.vision.image_size, info["vision"]["resolution"].get<int64_t>());
  EXPECT_EQ(c.vision.heads, info["vision"]["heads"].get<int64_t>());
  EXPECT_EQ(c.text.width, info["text"]["width"].get<int64_t>());
  EXPECT_EQ(c.text.layers, info["text"]["layers"].get<int64_t>());
  EXPECT_EQ(c.text.heads, info["text"]["heads"].get<int64_t>());
  EXPECT_EQ(c.text.context_length, info["text"]["context"].get<int64_t>());
  EXPECT_EQ(c.text.vocab_size, info["text"]["vocab"].get<int64_t>());
  EXPECT_EQ(c.embed_dim, info["embed_dim"].get<int64_t>());
  for (int i = 0; i < 3; ++i) {
    EXPECT_FLOAT_EQ(checkpoint.preprocess.mean[i], info["mean"][i].get<float>());
    EXPECT_FLOAT_EQ(checkpoint.preprocess.std[i], info["std"][i].get<float>());
  }
}

TEST_P(ClipParity, ImageEmbeddingsMatchReference) {
  torch::NoGradGuard no_grad;
  EXPECT_LT(max_abs_diff(model->encode_image(images("", 224)), reference.at("image_embeds")), kTolerance);
}

TEST_P(ClipParity, TextEmbeddingsMatchReference) {
  torch::NoGradGuard no_grad;
  EXPECT_LT(max_abs_diff(model->encode_text(reference.at("tokens")), reference.at("text_embeds")), kTolerance);
}

TEST_P(ClipParity, BlockTokensMatchReference) {
  torch::NoGradGuard no_grad;
  const auto blocks = info["tap_blocks"].get<std::vector<int64_t>>();
  const auto taps = model->visual->forward_with_taps(images("", 224), blocks);
  ASSERT_EQ(taps.block_tokens.size(), blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    const auto& expected = reference.at("image1_block" + std::to_string(blocks[i]) + "_tokens");
    EXPECT_LT(max_abs_diff(taps.block_tokens[i][0], expected), kTolerance) << "block " << blocks[i];
  }
}

TEST_P(ClipParity, ResizedPositionEmbeddingsMatchReference) {
  torch::NoGradGuard no_grad;
  const int64_t size = info["alt_resolution"].get<int64_t>();
  const auto embeds = model->encode_image(images("_s" + std::to_string(size), size));
  EXPECT_LT(max_abs_diff(embeds, reference.at("image_embeds_s160")), kTolerance);
}

TEST_P(ClipParity, MatricesStoredInBf16AgreeWithReference) {
  // The lean inference build: block projections and patch embedding allocated in bf16 from the
  // start, everything else fp32; embeddings must still agree with the reference (cosine).
  auto lean = build_clip_model(checkpoint, torch::kBFloat16);
  const auto matrices = lean->matrix_parameters();
  // Per block: in_proj weight+bias, out_proj weight+bias, c_fc and c_proj weight+bias; plus conv1.
  const auto& c = checkpoint.config;
  EXPECT_EQ(matrices.size(), static_cast<size_t>(8 * (c.vision.layers + c.text.layers) + 1));
  for (const auto& p : matrices) EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
  for (const auto& p : lean->named_parameters()) {
    const bool is_matrix = std::any_of(matrices.begin(), matrices.end(),
                                       [&](const torch::Tensor& m) { return m.is_same(p.value()); });
    if (!is_matrix) EXPECT_EQ(p.value().scalar_type(), torch::kFloat32) << p.key();
  }
  lean->set_compute_dtype(torch::kBFloat16);
  torch::NoGradGuard no_grad;
  const auto image = lean->encode_image(images("", 224));
  const auto text = lean->encode_text(reference.at("tokens"));
  const auto& image_ref = reference.at("image_embeds");
  const auto& text_ref = reference.at("text_embeds");
  namespace F = torch::nn::functional;
  const auto cos = [](const torch::Tensor& a, const torch::Tensor& b) {
    return F::cosine_similarity(a.to(torch::kFloat64), b.to(torch::kFloat64), F::CosineSimilarityFuncOptions().dim(1))
        .min()
        .item<double>();
  };
  EXPECT_GT(cos(image, image_ref), 0.999);
  EXPECT_GT(cos(text, text_ref), 0.999);
  EXPECT_GT(max_abs_diff(image, image_ref), 1e-6);  // bf16 really ran
}

INSTANTIATE_TEST_SUITE_P(AllFormats, ClipParity,
                         ::testing::Values("openai_jit.pt", "openclip_state_dict.pt", "hf_model.safetensors"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (auto& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

// Heads cannot be read from tensor shapes. OpenAI's and open_clip's towers use width / 64, but
// open_clip's ViT-H/14, ViT-g/14 and ViT-bigG/14 image towers have 16 heads (head_width 80, 88
// and 104 in open_clip's model configs); their text towers keep width / 64.
TEST(InferClipConfig, HeadsFollowOpenClipsModelConfigs) {
  const std::vector<std::pair<int64_t, int64_t>> width_heads = {
      {768, 12}, {1024, 16}, {1280, 16}, {1408, 16}, {1664, 16}, {192, 3}, {32, 1}};
  for (const auto& [width, heads] : width_heads) {
    TensorMap t;
    t["visual.conv1.weight"] = torch::zeros({width, 3, 2, 2});
    t["visual.positional_embedding"] = torch::zeros({5, width});  // a 2x2 grid and the class token
    t["visual.transformer.resblocks.0.ln_1.weight"] = torch::zeros({width});
    t["visual.transformer.resblocks.0.mlp.c_fc.weight"] = torch::zeros({32, width});
    t["visual.proj"] = torch::zeros({width, 8});
    t["token_embedding.weight"] = torch::zeros({10, 1280});
    t["positional_embedding"] = torch::zeros({7, 1280});
    t["transformer.resblocks.0.ln_1.weight"] = torch::zeros({1280});
    t["transformer.resblocks.0.mlp.c_fc.weight"] = torch::zeros({32, 1280});
    t["text_projection"] = torch::zeros({1280, 8});
    const auto config = infer_clip_config(t, "weights");
    EXPECT_EQ(config.vision.heads, heads) << "image width " << width;
    EXPECT_EQ(config.text.heads, 20) << "text width 1280 (ViT-bigG/14's)";
  }
}
