// MedSadClip::to(device) moves everything the model computes with: a tensor left behind (the
// frozen backbone, which is not a registered child; the cached prompt features; an index made on
// the CPU inside forward) fails the forward on a GPU, which refuses to mix devices. These tests
// need a CUDA build and a GPU and skip elsewhere: LibTorch 1.13's "meta" device would check the
// same without one, but its Module::to cannot move parameters there (set_data refuses).
#include "clip/scratch.h"
#include "clip/tiny_scratch_options.h"
#include "clip/tokenizer.h"
#include "clip/weights.h"
#include "model/losses.h"
#include "model/medsad_clip.h"
#include "test_support.h"

using namespace medsad;
using namespace medsad::model;

namespace {

// The first CUDA device; the calling test skips where there is none.
#define REQUIRE_CUDA()                                                         \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device in this build or machine"
const torch::Device kGpu(torch::kCUDA, 0);

MedSadConfig config_for(const clip::ClipModel& clip, PromptMode prompts, bool train_backbone) {
  MedSadConfig c;
  c.object = "brain MRI";
  c.prompts = prompts;
  c.prompt_length = 4;
  c.train_backbone = train_backbone;
  c.resolve(clip->config.vision.layers, clip->config.vision.image_size, clip->config.vision.patch_size);
  return c;
}

// Forward (and, when training, the losses and backward) with every input on the GPU, and the
// same numbers as on the CPU (cuDNN may use TF32 in convolutions: a loose tolerance).
void expect_runs_on_gpu(MedSadClip& model, bool training) {
  const int64_t B = 2, S = model->config.image_size;
  torch::manual_seed(3);
  const auto images = torch::randn({B, 3, S, S});
  torch::Tensor cpu_map, cpu_score;
  {
    torch::NoGradGuard no_grad;
    const auto out = model->forward(images, /*smooth=*/true);
    cpu_map = out.anomaly_map;
    cpu_score = out.score;
  }
  model->to(kGpu);
  ASSERT_EQ(model->device(), kGpu);
  {
    torch::NoGradGuard no_grad;
    const auto out = model->forward(images.to(kGpu), /*smooth=*/true);
    EXPECT_EQ(out.anomaly_map.device(), kGpu);
    EXPECT_EQ(out.score.device(), kGpu);
    EXPECT_LT((out.anomaly_map.cpu() - cpu_map).abs().max().item<float>(), 5e-3);
    EXPECT_LT((out.score.cpu() - cpu_score).abs().max().item<float>(), 5e-3);
  }
  if (!training) return;
  const auto out = model->forward(images.to(kGpu));
  const auto on_gpu = torch::TensorOptions().device(kGpu);
  const auto terms = medsad_loss(out, torch::zeros({B, S, S}, on_gpu), torch::ones({B}, on_gpu.dtype(torch::kBool)),
                                 torch::tensor({0, 1}).to(kGpu), model->config);
  EXPECT_EQ(terms.total.device(), kGpu);
  terms.total.backward();
  for (const auto& p : model->parameters())
    if (p.requires_grad()) {
      ASSERT_TRUE(p.grad().defined());
      EXPECT_EQ(p.grad().device(), kGpu);
    }
}

}  // namespace

TEST(ModelDevice, FrozenClipWithLearnedPromptsTrainsOnTheModelsDevice) {
  REQUIRE_CUDA();
  auto clip = clip::load_clip_model(test::fixture("openclip_state_dict.pt"));
  const auto tokenizer = clip::Tokenizer::from_bpe_file(test::bpe_path());
  MedSadClip model(clip, tokenizer, config_for(clip, PromptMode::Learned, false));
  expect_runs_on_gpu(model, /*training=*/true);
  for (const auto& p : clip->parameters()) EXPECT_EQ(p.device(), kGpu);  // not a child, moved all the same
}

TEST(ModelDevice, FixedPromptFeaturesComputedAtConstructionMoveToo) {
  REQUIRE_CUDA();
  auto clip = clip::load_clip_model(test::fixture("openclip_state_dict.pt"));
  const auto tokenizer = clip::Tokenizer::from_bpe_file(test::bpe_path());
  MedSadClip model(clip, tokenizer, config_for(clip, PromptMode::Fixed, false));
  expect_runs_on_gpu(model, /*training=*/true);
}

TEST(ModelDevice, ScratchBackboneTrainsOnTheModelsDevice) {
  REQUIRE_CUDA();
  for (auto prompts : {PromptMode::Learned, PromptMode::Fixed}) {
    const auto tokenizer = clip::Tokenizer::byte_level();
    auto clip = clip::build_scratch_clip(clip::scratch_clip_config(test::tiny_encoder_scratch_options(), tokenizer.vocab_size()));
    MedSadClip model(clip, tokenizer, config_for(clip, prompts, true));
    expect_runs_on_gpu(model, /*training=*/true);
  }
}

TEST(ModelDevice, PreparedForInferenceThenMoved) {
  REQUIRE_CUDA();
  // The order load_trained_model uses is move, then prepare; check the other way round too.
  for (bool move_first : {true, false}) {
    auto clip = clip::load_clip_model(test::fixture("openclip_state_dict.pt"));
    const auto tokenizer = clip::Tokenizer::from_bpe_file(test::bpe_path());
    MedSadClip model(clip, tokenizer, config_for(clip, PromptMode::Learned, false));
    if (move_first) model->to(kGpu);
    model->prepare_for_inference(torch::kFloat32);
    if (!move_first) model->to(kGpu);
    torch::NoGradGuard no_grad;
    const auto images = torch::randn({2, 3, model->config.image_size, model->config.image_size}).to(kGpu);
    const auto out = model->forward(images);
    EXPECT_EQ(out.anomaly_map.device(), kGpu);
    model->prepare_for_inference(torch::kBFloat16);
    EXPECT_EQ(model->forward(images).score.device(), kGpu);
    for (const auto& p : clip->matrix_parameters()) EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
  }
}
