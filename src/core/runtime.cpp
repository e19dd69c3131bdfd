#include "core/runtime.h"

#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cctype>
#include <fstream>
#include <sstream>
#include <thread>

#include <torch/torch.h>

#include "core/error.h"
#include "core/text.h"

namespace medsad {

int configure_threads(int n) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // More than a few threads a core only contend: 4096 on 2 cores took minutes over one image.
  const int threads = n > 0 ? std::min(n, 4 * cores) : cores;
  torch::set_num_threads(threads);
  return threads;
}

std::string blas_library_path() {
  // Look the symbol up in the global namespace of the running process: whichever library the
  // dynamic linker bound for libblas.so.3 (Debian's alternatives system decides which).
  void* sym = ::dlsym(RTLD_DEFAULT, "sgemm_");
  if (!sym) return "";
  Dl_info info{};
  if (::dladdr(sym, &info) == 0 || !info.dli_fname) return "";
  char resolved[4096];
  if (::realpath(info.dli_fname, resolved)) return resolved;
  return info.dli_fname;
}

bool is_fast_blas(const std::string& path) {
  const std::string lower = ascii_lower(path);
  for (const char* name : {"openblas", "blis", "mkl", "atlas"})
    if (lower.find(name) != std::string::npos) return true;
  return false;
}

bool cpu_has_native_bf16() {
  static const bool native = [] {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
      if (line.rfind("flags", 0) != 0) continue;
      std::istringstream words(line);
      for (std::string w; words >> w;)
        if (w == "avx512_bf16" || w == "amx_bf16") return true;
      return false;
    }
    return false;
  }();
  return native;
}

torch::Device resolve_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (name == "cpu") return torch::kCPU;
  if (name.rfind("cuda", 0) != 0) fail("", "--device must be cpu, cuda, cuda:N or auto, got '" + name + "'");
  int64_t index = 0;
  if (name != "cuda") {
    const std::string digits = name.size() > 5 && name[4] == ':' ? name.substr(5) : "";
    if (digits.empty() || digits.size() > 4 || !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); }))
      fail("", "--device must be cpu, cuda, cuda:N or auto, got '" + name + "'");
    index = std::stoll(digits);
  }
  if (!torch::cuda::is_available())
    fail("", "--device " + name + ": no CUDA device (this LibTorch build has no CUDA support, or no GPU is visible)");
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (index >= count)
    fail("", "--device " + name + ": there " + (count == 1 ? "is 1 CUDA device" : "are " + std::to_string(count) + " CUDA devices"));
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

torch::Dtype resolve_precision(const std::string& name, torch::Device device) {
  if (name == "fp32") return torch::kFloat32;
  if (name == "bf16") return torch::kBFloat16;
  if (name == "auto") return device.is_cuda() || cpu_has_native_bf16() ? torch::kBFloat16 : torch::kFloat32;
  fail("", "--precision must be fp32, bf16 or auto, got '" + name + "'");
}

bool set_blas_threads(int n) {
  using SetThreads = void (*)(int);
  auto* set = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!set) return false;
  set(n);
  return true;
}

torch::Dtype configure_precision(const std::string& name, torch::Device device) {
  const auto dtype = resolve_precision(name, device);
  // In bf16 the heavy products run in oneDNN on LibTorch's OpenMP threads; the few fp32 products
  // left (adapters, TPCA, their gradients) go to OpenBLAS, whose own idle threads then spin
  // against the OpenMP ones on the same cores. One BLAS thread measured 1.25x faster training
  // here (2 cores); fp32 keeps OpenBLAS's threads, which measured 1.3x faster than one.
  if (dtype == torch::kBFloat16 && device.is_cpu() && !std::getenv("OPENBLAS_NUM_THREADS")) set_blas_threads(1);
  return dtype;
}

void configure_thread_wait(char** argv, bool fp32_products_on_cpu) {
  // With PASSIVE, fp32 steps of the demo's model took 0.96-1.27 s against 2.13-2.17 s with
  // libgomp's default spin (OpenBLAS's threads starved); bf16 steps 0.59-0.68 s against 0.47-0.57 s
  // (each of LibTorch's short parallel operators woke a sleeping thread): bench/README.md, item 10.
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT") || !fp32_products_on_cpu) return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv("/proc/self/exe", argv);  // returns only on failure: carry on with the default policy
}

std::string thread_wait_description() {
  for (const char* name : {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"})
    if (const char* value = std::getenv(name)) return std::string(name) + "=" + value;
  return "default";
}

void configure_process() {
  // Training allocates and frees the same few-MB activation buffers every step. glibc's default
  // hands blocks over 128 kB back to the kernel on free (mmap/munmap) and trims the heap eagerly,
  // so each step page-faults its memory in again: a third of training time went to the kernel.
  // Keeping blocks up to 32 MB (glibc's maximum) in the heap measured 1.4x faster training.
  ::mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  ::mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
}

}  // namespace medsad
