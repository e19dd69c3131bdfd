// Process-wide runtime set-up, done once in main(): thread count and a check that LibTorch
// found a fast BLAS (Debian falls back to the reference BLAS, ~10x slower, without OpenBLAS).
#pragma once
#include <string>

namespace medsad {

// Sets LibTorch's intra-op threads: n > 0 as given, n == 0 means every core.
// Returns the count in effect.
int configure_threads(int n);

// The shared library that provides the BLAS sgemm_ LibTorch calls (e.g. ".../libopenblas.so.0"),
// or "" if it cannot be determined.
std::string blas_library_path();

// True if `path` names a known optimised BLAS (OpenBLAS, BLIS, MKL, ATLAS).
bool is_fast_blas(const std::string& path);

}  // namespace medsad
