// The transformer block against a brute-force reference written from OpenAI CLIP's definition,
// on inputs large enough that attention and the MLP are computed in several slices.
#include "clip/transformer.h"
#include "test_support.h"

using namespace medsad::clip;

namespace {

// x + attn(ln_1(x)), then + mlp(ln_2(.)), all heads and rows at once, fp32.
torch::Tensor brute_force_block(ResidualAttentionBlockImpl& b, const torch::Tensor& x, const torch::Tensor& mask) {
  namespace F = torch::nn::functional;
  const int64_t B = x.size(0), L = x.size(1), D = x.size(2), H = b.attn->heads, Dh = D / H;
  const auto ln = [](torch::nn::LayerNorm& n, const torch::Tensor& t) {
    return F::layer_norm(t, F::LayerNormFuncOptions({t.size(-1)}).weight(n->weight).bias(n->bias).eps(1e-5));
  };
  const auto qkv = F::linear(ln(b.ln_1, x), b.attn->in_proj_weight, b.attn->in_proj_bias).chunk(3, -1);
  auto heads = [&](const torch::Tensor& t) { return t.reshape({B, L, H, Dh}).permute({0, 2, 1, 3}); };
  auto logits = torch::matmul(heads(qkv[0]), heads(qkv[1]).transpose(-1, -2)) / std::sqrt(double(Dh));
  if (mask.defined()) logits = logits + mask;
  auto attended = torch::matmul(logits.softmax(-1), heads(qkv[2])).permute({0, 2, 1, 3}).reshape({B, L, D});
  auto h = x + F::linear(attended, b.attn->out_proj->weight, b.attn->out_proj->bias);
  auto m = F::linear(ln(b.ln_2, h), b.c_fc->weight, b.c_fc->bias);
  m = m * torch::sigmoid(1.702 * m);  // QuickGELU
  return h + F::linear(m, b.c_proj->weight, b.c_proj->bias);
}

}  // namespace

TEST(Transformer, SlicedAttentionAndMlpMatchBruteForce) {
  torch::manual_seed(3);
  // 16 heads x 2 images of 600 tokens: 32 attention maps of 360k weights, sliced by 4M
  // elements -> 3 slices; 1200 rows of a 4096-wide hidden layer (16 MB in fp32: 1024 rows) -> 2.
  const int64_t D = 64, H = 16, L = 600, mlp = 4096;
  ASSERT_GT(2 * H * L * L, kAttentionChunkElements);
  ASSERT_GT(2 * L * mlp * 4, kMlpChunkBytes);
  ResidualAttentionBlock block(D, H, mlp, Activation::QuickGelu, 1e-5);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, L, D});
  const auto expected = brute_force_block(*block, x, {});
  EXPECT_LT((block(x) - expected).abs().max().item<double>(), 1e-4);
  // With a causal mask (the text tower's).
  const auto mask = torch::full({L, L}, -std::numeric_limits<float>::infinity()).triu(1);
  EXPECT_LT((block(x, mask) - brute_force_block(*block, x, mask)).abs().max().item<double>(), 1e-4);
}

TEST(Transformer, GradientsThroughSlicesMatchBruteForce) {
  torch::manual_seed(4);
  const int64_t D = 64, H = 16, L = 600, mlp = 4096;
  ResidualAttentionBlock block(D, H, mlp, Activation::QuickGelu, 1e-5);
  auto x = torch::randn({2, L, D}, torch::requires_grad());
  const auto w = torch::randn({2, L, D});
  const auto g = torch::autograd::grad({(block(x) * w).sum()}, {x})[0];
  const auto g_ref = torch::autograd::grad({(brute_force_block(*block, x, {}) * w).sum()}, {x})[0];
  EXPECT_LT((g - g_ref).abs().max().item<double>(), 1e-3 * g_ref.abs().max().item<double>());
}
