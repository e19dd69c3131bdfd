// Seeded random draws that give the same numbers with every standard library: the raw
// std::mt19937_64 stream is specified by the standard, std::*_distribution is not.
#pragma once
#include <cstdint>
#include <random>
#include <utility>

namespace medsad {

// Uniform integer in [0, bound), bound > 0, without modulo bias.
[[nodiscard]] uint64_t draw_below(std::mt19937_64& rng, uint64_t bound);

// Uniform double in [0, 1) from the top 53 bits of one draw.
[[nodiscard]] double draw_uniform(std::mt19937_64& rng);

// Uniform double in [lo, hi).
[[nodiscard]] double draw_uniform(std::mt19937_64& rng, double lo, double hi);

// Standard normal (Box-Muller; one pair of uniforms per value, so no state between calls).
[[nodiscard]] double draw_normal(std::mt19937_64& rng);

// Two independent standard normals from one Box-Muller step (half the cost per value).
[[nodiscard]] std::pair<double, double> draw_normal_pair(std::mt19937_64& rng);

// A well-mixed seed for stream `stream` of a run seeded with `seed` (splitmix64), so that
// (seed, stream) pairs that differ anywhere give unrelated generators.
[[nodiscard]] uint64_t mix_seed(uint64_t seed, uint64_t stream);

}  // namespace medsad
