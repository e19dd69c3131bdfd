#include "core/random.h"

#include <cmath>

namespace medsad {

uint64_t draw_below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound: draws below it would bias the modulo
  uint64_t r;
  do r = rng();
  while (r < threshold);
  return r % bound;
}

double draw_uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

double draw_uniform(std::mt19937_64& rng, double lo, double hi) { return lo + (hi - lo) * draw_uniform(rng); }

double draw_normal(std::mt19937_64& rng) {
  const double u1 = 1.0 - draw_uniform(rng);  // (0, 1]: log stays finite
  const double u2 = draw_uniform(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

std::pair<double, double> draw_normal_pair(std::mt19937_64& rng) {
  const double u1 = 1.0 - draw_uniform(rng);
  const double u2 = draw_uniform(rng);
  const double radius = std::sqrt(-2.0 * std::log(u1));
  return {radius * std::cos(2.0 * M_PI * u2), radius * std::sin(2.0 * M_PI * u2)};
}

uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace medsad
