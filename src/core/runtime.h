// Process-wide runtime set-up, done once in main(): thread count and a check that LibTorch
// found a fast BLAS (Debian falls back to the reference BLAS, ~10x slower, without OpenBLAS).
#pragma once
#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/types.h>

namespace medsad {

// First thing in main(): glibc keeps freed activation buffers in the heap instead of returning
// them to the kernel.
void configure_process();

// How LibTorch's idle OpenMP threads wait for the next parallel operator, for a run whose matrix
// products are fp32 on the CPU (`fp32_products_on_cpu`: they then run in OpenBLAS's own threads)
// or not (bf16 products run in oneDNN on the OpenMP threads themselves; a GPU's on the GPU).
// fp32 on the CPU: OMP_WAIT_POLICY=PASSIVE, so that no OpenMP thread spins on a core OpenBLAS
// needs. Otherwise libgomp's default, a short spin before sleeping, which spares a wake-up for
// each of the many short operators. libgomp reads the policy once, when it is loaded, so
// setting it re-executes the program (once: the variable is then set). A user's own
// OMP_WAIT_POLICY or GOMP_SPINCOUNT is respected. Call before any work with side effects.
void configure_thread_wait(char** argv, bool fp32_products_on_cpu);

// The policy in effect, for logs: "OMP_WAIT_POLICY=..." or "GOMP_SPINCOUNT=..." as set, or
// "default" (libgomp's short spin).
std::string thread_wait_description();

// Sets LibTorch's intra-op threads: n > 0 as given up to 4 per core, n == 0 means every core.
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
