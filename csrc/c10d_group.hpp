// The process group behind csrc/c10d_shim.cpp's handles, and the shims' error return, shared
// with csrc/gradient_sync.cpp.
#pragma once

#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <cstdio>
#include <exception>

namespace smtl {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  // NCCL, for CUDA tensors, once attached; null: Gloo takes them too.
  c10::intrusive_ptr<c10d::Backend> cuda_backend;
  // Ends it cleanly before it is destroyed (else it warns that it was not).
  void (*shutdown_cuda_backend)(c10d::Backend*) = nullptr;
  int rank;
  int size;
  std::chrono::milliseconds timeout;

  // Whether `tensor`'s collectives go through NCCL (a CUDA tensor, NCCL attached).
  bool uses_nccl(const at::Tensor& tensor) const { return tensor.is_cuda() && cuda_backend; }

  c10d::Backend& backend_for(const at::Tensor& tensor) { return uses_nccl(tensor) ? *cuda_backend : *backend; }

  // Waits for a collective. A Gloo wait blocks until the result is there (or the timeout). A
  // NCCL wait only orders the current CUDA stream after the collective, as DDP's does, so the
  // host does not wait for the GPU; NCCL's own watchdog enforces the timeout given when it
  // was made.
  void wait(c10d::Work& work, bool nccl) {
    if (nccl) {
      work.wait();
    } else {
      work.wait(timeout);
    }
  }

  // Runs one collective on the backend for `tensor`'s device and waits for it.
  template <typename Launch>
  void run(const at::Tensor& tensor, Launch launch) {
    bool nccl = uses_nccl(tensor);
    auto work = launch(backend_for(tensor));
    wait(*work, nccl);
  }
};

// The shims' error return: the exception's message into `error`, and 1.
inline int fail(const std::exception& e, char* error, size_t error_len) {
  std::snprintf(error, error_len, "%s", e.what());
  return 1;
}

}  // namespace smtl
