#include "core/runtime.h"
#include "test_support.h"

using namespace medsad;

TEST(Runtime, RecognisesOptimisedAndReferenceBlas) {
  EXPECT_TRUE(is_fast_blas("/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"));
  EXPECT_TRUE(is_fast_blas("/opt/intel/mkl/lib/libmkl_rt.so"));
  EXPECT_FALSE(is_fast_blas("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"));
  EXPECT_FALSE(is_fast_blas(""));
}

TEST(Runtime, ThisBuildFoundTheBlasTheSetupInstalls) {
  // scripts/setup.sh installs libopenblas0-pthread; without it LibTorch is ~10x slower here.
  EXPECT_TRUE(is_fast_blas(blas_library_path())) << "BLAS in use: " << blas_library_path();
}

TEST(Runtime, ThreadsDefaultToEveryCore) {
  EXPECT_EQ(configure_threads(3), 3);
  EXPECT_EQ(torch::get_num_threads(), 3);
  EXPECT_EQ(configure_threads(0), static_cast<int>(std::thread::hardware_concurrency()));
  torch::set_num_threads(2);
}
