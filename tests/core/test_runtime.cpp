#include "core/runtime.h"

#include <dlfcn.h>

#include <cstdlib>

#include "core/error.h"
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
  EXPECT_EQ(configure_threads(100000), 4 * static_cast<int>(std::thread::hardware_concurrency()));
  torch::set_num_threads(2);
}

TEST(Runtime, Bf16RunsOpenBlasSingleThreadedAndFp32LeavesItAlone) {
  using GetThreads = int (*)();
  auto* get = reinterpret_cast<GetThreads>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  ASSERT_NE(get, nullptr) << "the setup installs OpenBLAS";
  ASSERT_EQ(std::getenv("OPENBLAS_NUM_THREADS"), nullptr) << "the test needs OpenBLAS's own default";
  ASSERT_TRUE(set_blas_threads(2));
  EXPECT_EQ(configure_precision("fp32"), torch::kFloat32);
  EXPECT_EQ(get(), 2);
  EXPECT_EQ(configure_precision("bf16"), torch::kBFloat16);
  EXPECT_EQ(get(), 1);
  EXPECT_THROW(configure_precision("fp16"), Error);
  set_blas_threads(2);
}

TEST(Runtime, DevicesAreCheckedAndAutoFollowsWhatTheBuildSees) {
  EXPECT_EQ(resolve_device("cpu"), torch::Device(torch::kCPU));
  const bool cuda = torch::cuda::is_available();
  EXPECT_EQ(resolve_device("auto"), cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU));
  for (const std::string bad : {"gpu", "CPU", "", "cuda:", "cuda:-1", "cuda:1x", "cuda0", "cuda:99999"}) {
    try {
      resolve_device(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "--device must be cpu, cuda, cuda:N or auto, got '" + bad + "'");
    }
  }
  if (cuda) {
    EXPECT_EQ(resolve_device("cuda:0"), torch::Device(torch::kCUDA, 0));
  } else {
    EXPECT_THROW(resolve_device("cuda"), Error);
    EXPECT_THROW(resolve_device("cuda:0"), Error);
  }
  // On CUDA auto means bf16 whatever this CPU has; explicit names are taken as given.
  const torch::Device gpu(torch::kCUDA, 0);
  EXPECT_EQ(resolve_precision("auto", gpu), torch::kBFloat16);
  EXPECT_EQ(resolve_precision("fp32", gpu), torch::kFloat32);
  EXPECT_EQ(resolve_precision("auto"), cpu_has_native_bf16() ? torch::kBFloat16 : torch::kFloat32);
}
