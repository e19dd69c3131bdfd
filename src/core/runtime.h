// Process-wide runtime set-up, done once in main(): thread count and a check that LibTorch
// found a fast BLAS (Debian falls back to the reference BLAS, ~10x slower, without OpenBLAS).
#pragma once
#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/types.h>

namespace medsad {

// First thing in main(): OpenMP threads wait passively (the program is re-executed once with
// OMP_WAIT_POLICY=PASSIVE unless the user set it) and glibc keeps freed activation buffers in
// the heap instead of returning them to the kernel.
void configure_process(char** argv);

// Sets LibTorch's intra-op threads: n > 0 as given, n == 0 means every core.
// Returns the count in effect.
int configure_threads(int n);

// The shared library that provides the BLAS sgemm_ LibTorch calls (e.g. ".../libopenblas.so.0"),
// or "" if it cannot be determined.
std::string blas_library_path();

// True if `path` names a known optimised BLAS (OpenBLAS, BLIS, MKL, ATLAS).
bool is_fast_blas(const std::string& path);

// True if the CPU computes bf16 matrix products natively (AVX-512 BF16 or AMX-BF16, from
// /proc/cpuinfo): oneDNN then runs them far faster than fp32. Elsewhere bf16 is emulated and slow.
bool cpu_has_native_bf16();

// --device: "cpu", "cuda", "cuda:N" or "auto" (the first CUDA device if this LibTorch build
// sees one, else the CPU). Throws Error for another name, or for a CUDA device this build or
// machine does not have (Debian's LibTorch is CPU-only; a PyTorch install's is CUDA-enabled).
torch::Device resolve_device(const std::string& name);

// "bf16", "fp32" or "auto" -> the compute dtype. auto: on the CPU bf16 where
// cpu_has_native_bf16, else fp32; on CUDA bf16 (Ampere and newer compute it natively; give
// fp32 for older GPUs). Throws Error for any other name.
torch::Dtype resolve_precision(const std::string& name, torch::Device device = torch::kCPU);

// resolve_precision, and set the process up for it: with bf16 on the CPU, OpenBLAS runs
// single-threaded (unless OPENBLAS_NUM_THREADS says otherwise). For the commands that run the model.
torch::Dtype configure_precision(const std::string& name, torch::Device device = torch::kCPU);

// Sets OpenBLAS's thread count at run time; false if the BLAS in use is not OpenBLAS.
bool set_blas_threads(int n);

}  // namespace medsad
