// libtorch's NCCL process group (c10d::ProcessGroupNCCL), as a shared library of its own: it
// lives in libtorch_cuda.so, which the binary does not link (src/device.rs loads it when a
// CUDA device is asked for), so this file is built by build.rs into a separate object that the
// binary carries and loads after the CUDA backend (src/distributed/nccl.rs), on machines where
// the build found the CUDA and NCCL headers the torch wheel's own dependencies ship.
// Two entry points: a Backend for the store csrc/c10d_shim.cpp joined, and its shutdown. No
// C++ exception crosses this boundary.
#define USE_C10D_NCCL 1
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <cstdio>

extern "C" {

// A ProcessGroupNCCL over `store` (borrowed; its keys go under "nccl/", apart from Gloo's),
// whose collectives time out after `timeout_ms`. NCCL's communicators are made on the first
// collective, on the device of its tensors. Returns an owned c10d::Backend*, or null with a
// message.
void* smtl_nccl_backend(c10d::Store* store, int rank, int size, int64_t timeout_ms, char* error, size_t error_len) {
  try {
    auto shared = c10::intrusive_ptr<c10d::Store>::unsafe_reclaim_from_nonowning(store);
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("nccl/", shared);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    c10::intrusive_ptr<c10d::Backend> backend =
        c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, size, options);
    return backend.release();
  } catch (const std::exception& e) {
    std::snprintf(error, error_len, "%s", e.what());
    return nullptr;
  }
}

// Ends the backend's communicators and its watchdog, as destroy_process_group does.
void smtl_nccl_shutdown(c10d::Backend* backend) {
  try {
    static_cast<c10d::ProcessGroupNCCL*>(backend)->shutdown();
  } catch (...) {
  }
}

}  // extern "C"
