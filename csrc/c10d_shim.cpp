// C entry points for libtorch's distributed layer (c10d), which tch 0.17 does not expose: the
// TCPStore rendezvous, a Gloo process group, and the few collectives data-parallel training
// needs. Built by build.rs against the wheel's c10d headers and Debian's libgloo-dev headers
// (docs/distributed.md says why those are sound for torch 2.4.0's Gloo: this file calls no
// Gloo code and depends on no Gloo type's layout; ProcessGroupGloo's members are pointers).
// CUDA tensors go through NCCL instead once a NCCL backend is attached (csrc/nccl_shim.cpp, a
// library of its own), as PyTorch's default "cpu:gloo,cuda:nccl" process group does.
// No C++ exception crosses this boundary: errors come back as a return code and a message.
#include "c10d_group.hpp"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <c10/util/Logging.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <cstdio>
#include <sstream>
#include <thread>
#include <vector>

namespace {

using smtl::fail;
using smtl::Group;

// Makes a NCCL backend: csrc/nccl_shim.cpp's smtl_nccl_backend.
using BackendFactory = void* (*)(c10d::Store*, int, int, int64_t, char*, size_t);

c10d::ReduceOp reduce_op(int op) { return op == 1 ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM; }

const char* kRollCallPrefix = "smtl/alive/";
const char* kJoinedKey = "smtl/joined";
const char* kWorldKey = "smtl/world_size";
const char* kBuildKey = "smtl/build";
// More processes than any launch has: a larger join count is not one.
const int64_t kMostRanks = int64_t(1) << 20;
const char* kRefusedKey = "smtl/refused";
// Each rank's own key, set once it joined the store: who is missing when the handshake fails.
const std::string kPresentPrefix = "smtl/present/";

void set_text(c10d::Store& store, const std::string& key, const std::string& text) {
  store.set(key, std::vector<uint8_t>(text.begin(), text.end()));
}

std::string get_text(c10d::Store& store, const std::string& key) {
  const auto value = store.get(key);
  return std::string(value.begin(), value.end());
}

// The ranks of `size` that never joined the store, as "2" or "1, 3" (empty when all did).
std::string absent_ranks(c10d::Store& store, int size) {
  std::string missing;
  for (int r = 0; r < size; ++r) {
    if (!store.check({kPresentPrefix + std::to_string(r)})) {
      missing += (missing.empty() ? "" : ", ") + std::to_string(r);
    }
  }
  return missing;
}

}  // namespace

extern "C" {

// Joins the process group: rank 0 runs the TCPStore server on host:port (unless `prefix` is
// non-empty: then torchrun's agent already serves it, and every key goes under the prefix, as
// PyTorch's workers do), every rank connects to it (retrying until `timeout_ms`) and counts
// itself in, then Gloo connects every pair of ranks through it. A rank that counts more than
// `size` ranks has reached another launch's store on the same port: it sets `*cause` to 1
// and stops before Gloo, whose keys would mix with that launch's; one whose `size` is not
// rank 0's sets it to 2, and one whose `build` (the binary's version) is not rank 0's sets it
// to 4: ranks of other versions may call different collectives, which Gloo ends by aborting.
// When Gloo's handshake fails, it sets 5 if the store went away meanwhile (its host stopped),
// and 6 if some ranks never came (the message lists them). `*store_answered` becomes 1 (an
// atomic store, read by a watchdog thread) once the store has counted this rank in.
// Gloo binds to the network interfaces `interfaces` names (comma-separated, as PyTorch reads
// GLOO_SOCKET_IFNAME) when it is non-empty, else to the address `bind_host` resolves to when
// that is non-empty, else to the default device (this machine's hostname, or loopback).
// Returns a handle, or null with a message.
void* smtl_group_join(const char* host, int port, int rank, int size, const char* build, int64_t timeout_ms,
                      const char* prefix, const char* interfaces, const char* bind_host, int* store_answered,
                      int* cause, char* error, size_t error_len) {
  *cause = 0;
  try {
    // c10d and Gloo log retries and peer errors on stderr themselves; the caller reports each
    // failure once, in one line, so only their fatal messages stay on.
    FLAGS_caffe2_log_level = 3;
    auto group = std::make_unique<Group>();
    group->rank = rank;
    group->size = size;
    group->timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    std::string agent_prefix(prefix);
    options.isServer = rank == 0 && agent_prefix.empty();
    options.numWorkers = size;
    options.waitWorkers = false;
    options.timeout = group->timeout;
    c10::intrusive_ptr<c10d::Store> tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    group->store = tcp;
    if (!agent_prefix.empty()) {
      group->store = c10::make_intrusive<c10d::PrefixStore>(agent_prefix, tcp);
    }
    const auto joined = group->store->add(kJoinedKey, 1);
    // A count no launch reaches is another program's reply read as one (an HTTP server's
    // "HTTP/1.1" is 3.5e18).
    if (joined < 1 || joined > kMostRanks) {
      *cause = 3;
      throw std::runtime_error("the reply to joining was " + std::to_string(joined) + ", not a count of processes");
    }
    __atomic_store_n(store_answered, 1, __ATOMIC_RELEASE);
    const auto refuse = [&](int why, const std::string& message) {
      *cause = why;
      // For the ranks left waiting in Gloo's handshake, to say why once it fails: the
      // cause's digit, then the message.
      set_text(*group->store, kRefusedKey, std::to_string(why) + message);
      throw std::runtime_error(message);
    };
    const auto world_size_differs = [&](const std::string& rank0_size) {
      refuse(2, "rank " + std::to_string(rank) + " was started with WORLD_SIZE=" + std::to_string(size) +
                    ", rank 0 with WORLD_SIZE=" + rank0_size);
    };
    if (joined > size) {
      // A rank given a smaller WORLD_SIZE than rank 0's counts past its own while the count
      // is still within rank 0's: this launch's mismatch, not another launch on the port.
      if (rank != 0 && group->store->check({kWorldKey})) {
        const auto rank0_size = get_text(*group->store, kWorldKey);
        if (rank0_size != std::to_string(size) && joined <= std::stoll(rank0_size)) {
          world_size_differs(rank0_size);
        }
      }
      *cause = 1;
      throw std::runtime_error(std::to_string(joined) + " processes have joined its store");
    }
    // Rank 0's WORLD_SIZE and build, which every other rank must share: a rank that counts
    // another number would wait in Gloo's handshake for ranks that never come.
    // The build goes in first: a rank that finds WORLD_SIZE and no build has met a rank 0 of
    // a version from before this check.
    if (rank == 0) {
      set_text(*group->store, kBuildKey, build);
      set_text(*group->store, kWorldKey, std::to_string(size));
    } else {
      const auto rank0_size = get_text(*group->store, kWorldKey);
      if (rank0_size != std::to_string(size)) {
        world_size_differs(rank0_size);
      }
      const auto rank0_build =
          group->store->check({kBuildKey}) ? get_text(*group->store, kBuildKey) : std::string("an older sentence-mtl");
      if (rank0_build != build) {
        refuse(4, "rank " + std::to_string(rank) + " runs " + build + ", rank 0 runs " + rank0_build);
      }
    }
    set_text(*group->store, kPresentPrefix + std::to_string(rank), "1");
    auto gloo = c10d::ProcessGroupGloo::Options::create(group->timeout);
    std::string bind(bind_host);
    std::stringstream names(interfaces);
    for (std::string name; std::getline(names, name, ',');) {
      if (!name.empty()) {
        gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
      }
    }
    if (gloo->devices.empty()) {
      gloo->devices.push_back(bind.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                                           : c10d::ProcessGroupGloo::createDeviceForHostname(bind));
    }
    gloo->threads = 2;
    try {
      group->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, rank, size, gloo);
    } catch (const std::exception&) {
      bool answers = true;
      bool refused = false;
      try {
        refused = group->store->check({kRefusedKey});
      } catch (const std::exception&) {
        answers = false;
      }
      if (!answers) {
        // The store's host (rank 0, or torchrun's agent) stopped during the handshake.
        *cause = 5;
        throw std::runtime_error("the store went away during the handshake");
      }
      if (!refused) {
        const auto missing = absent_ranks(*group->store, size);
        if (missing.empty()) {
          throw;
        }
        *cause = 6;
        throw std::runtime_error(missing);
      }
      const auto why = get_text(*group->store, kRefusedKey);
      // A cause digit, then the message; a rank of an older version wrote the message alone
      // (a WORLD_SIZE refusal, the one it knew).
      const bool has_cause = !why.empty() && why[0] >= '0' && why[0] <= '9';
      *cause = has_cause ? why[0] - '0' : 2;
      throw std::runtime_error(has_cause ? why.substr(1) : why);
    }
    return group.release();
  } catch (const std::exception& e) {
    fail(e, error, error_len);
    return nullptr;
  }
}

// Sends CUDA tensors' collectives through the backend `factory` makes (NCCL), with its keys
// in this group's store; `shutdown` ends it before the group is freed. Every rank must attach
// one, or none. Returns 0, or 1 with a message.
int smtl_group_attach_cuda_backend(void* handle, void* factory, void* shutdown, char* error, size_t error_len) {
  try {
    auto* group = static_cast<Group*>(handle);
    group->shutdown_cuda_backend = reinterpret_cast<void (*)(c10d::Backend*)>(shutdown);
    auto make = reinterpret_cast<BackendFactory>(factory);
    void* backend = make(group->store.get(), group->rank, group->size, group->timeout.count(), error, error_len);
    if (backend == nullptr) {
      return 1;
    }
    group->cuda_backend = c10::intrusive_ptr<c10d::Backend>::reclaim(static_cast<c10d::Backend*>(backend));
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, error_len);
  }
}

void smtl_group_free(void* handle) {
  try {
    auto* group = static_cast<Group*>(handle);
    if (group->cuda_backend && group->shutdown_cuda_backend != nullptr) {
      group->shutdown_cuda_backend(group->cuda_backend.get());
    }
    delete group;
  } catch (...) {
  }
}

// All-reduces one tensor in place (op 0: sum, 1: max) and waits for it. Returns 0, or 1 with
// a message.
int smtl_group_all_reduce(void* handle, at::Tensor* tensor, int op, char* error, size_t error_len) {
  try {
    auto* group = static_cast<Group*>(handle);
    std::vector<at::Tensor> tensors{*tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = reduce_op(op);
    options.timeout = group->timeout;
    group->run(*tensor, [&](c10d::Backend& b) { return b.allreduce(tensors, options); });
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, error_len);
  }
}

// Broadcasts one tensor in place from `root`. Returns 0, or 1 with a message.
int smtl_group_broadcast(void* handle, at::Tensor* tensor, int root, char* error, size_t error_len) {
  try {
    auto* group = static_cast<Group*>(handle);
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.timeout = group->timeout;
    group->run(*tensor, [&](c10d::Backend& b) { return b.broadcast(tensors, options); });
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, error_len);
  }
}

// Gathers `input` (same shape on every rank) into outputs[0..size), on every rank. Returns 0,
// or 1 with a message.
int smtl_group_all_gather(void* handle, at::Tensor* input, at::Tensor** outputs, char* error, size_t error_len) {
  try {
    auto* group = static_cast<Group*>(handle);
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < group->size; r++) {
      out[0].push_back(*outputs[r]);
    }
    std::vector<at::Tensor> in{*input};
    c10d::AllgatherOptions options;
    options.timeout = group->timeout;
    group->run(*input, [&](c10d::Backend& b) { return b.allgather(out, in, options); });
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, error_len);
  }
}

// After a failed collective: says "alive" in the store, waits up to `wait_ms` for the other
// ranks to say it too, and marks in missing[0..size) the ranks that did not. Returns 0, or 1
// with a message when the store itself is gone (it lives in rank 0's process).
int smtl_group_roll_call(void* handle, int64_t wait_ms, int* missing, char* error, size_t error_len) {
  try {
    auto* group = static_cast<Group*>(handle);
    group->store->set(kRollCallPrefix + std::to_string(group->rank), std::vector<uint8_t>{1});
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    while (true) {
      int absent = 0;
      for (int r = 0; r < group->size; r++) {
        missing[r] = group->store->check({kRollCallPrefix + std::to_string(r)}) ? 0 : 1;
        absent += missing[r];
      }
      if (absent == 0 || std::chrono::steady_clock::now() >= deadline) {
        return 0;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  } catch (const std::exception& e) {
    return fail(e, error, error_len);
  }
}

}  // extern "C"
