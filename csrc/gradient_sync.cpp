// Gradient all-reduce overlapped with the backward pass, as PyTorch DDP's Reducer does it: a
// hook after each parameter's gradient accumulation counts the gradients still to come in
// its bucket, and a bucket whose gradients are all there is all-reduced (asynchronously)
// while autograd computes the rest. Buckets hold parameters in reverse order (the order
// backward produces their gradients in), the first one small so communication starts early,
// and they are launched strictly in order, so every rank issues the same collectives in the
// same order whatever its backward's timing (a rank with nothing to compute launches them
// all at once). tch exposes no autograd hooks; this file is why the shim needs them.
// No C++ exception crosses this boundary: errors come back as a return code and a message.
#include "c10d_group.hpp"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/csrc/autograd/variable.h>

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace {

using smtl::fail;
using torch::autograd::Node;
using torch::autograd::variable_list;

struct Bucket {
  std::vector<size_t> members;  // parameter indices, in the order they sit in `flat`
  size_t pending = 0;           // members whose gradient this backward has yet to produce
  at::Tensor flat;              // the members' gradients, flattened, in fp32
  c10::intrusive_ptr<c10d::Work> work;
  bool nccl = false;
};

struct Sync {
  smtl::Group* group;
  std::vector<at::Tensor> params;
  std::unordered_map<const c10::TensorImpl*, size_t> index;
  // Kept alive, so that every backward accumulates through the nodes the hooks are on
  // (a shared_ptr up to torch 2.11, an intrusive_ptr in newer ones).
  std::vector<decltype(torch::autograd::impl::grad_accumulator(std::declval<at::Tensor>()))> accumulators;

  // Hooks run on autograd's threads (one per CUDA device), hence the lock.
  std::mutex mutex;
  bool armed = false;
  std::vector<Bucket> buckets;
  std::vector<ptrdiff_t> bucket_of;  // per parameter; -1: not reduced in this step
  std::vector<bool> waiting;         // per parameter: its hook has yet to run in this backward
  size_t launched = 0;               // buckets launched so far (always a prefix)
  size_t launched_during_backward = 0;
  std::string error;                 // the first launch that failed inside a hook

  void launch(Bucket& bucket) {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> parts;
    for (size_t i : bucket.members) {
      const at::Tensor& grad = params[i].grad();
      parts.push_back(grad.defined() ? grad.to(at::kFloat).reshape({-1})
                                     : at::zeros({params[i].numel()}, params[i].options().dtype(at::kFloat)));
    }
    bucket.flat = at::cat(parts);
    bucket.nccl = group->uses_nccl(bucket.flat);
    std::vector<at::Tensor> tensors{bucket.flat};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    options.timeout = group->timeout;
    bucket.work = group->backend_for(bucket.flat).allreduce(tensors, options);
  }

  // Launches, in order, every bucket from the first not yet launched that has nothing pending.
  void launch_ready() {
    while (launched < buckets.size() && buckets[launched].pending == 0) {
      launch(buckets[launched++]);
    }
  }

  // The hook: parameter `i`'s gradient is accumulated.
  void on_gradient(size_t i) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed || bucket_of[i] < 0 || !waiting[i] || !error.empty()) {
      return;
    }
    waiting[i] = false;
    buckets[bucket_of[i]].pending--;
    size_t before = launched;
    try {
      launch_ready();
    } catch (const std::exception& e) {
      error = e.what();
    }
    launched_during_backward += launched - before;
  }
};

struct AfterAccumulation : torch::autograd::FunctionPostHook {
  std::weak_ptr<Sync> sync;
  size_t param;
  AfterAccumulation(std::weak_ptr<Sync> s, size_t p) : sync(std::move(s)), param(p) {}
  variable_list operator()(const variable_list& outputs, const variable_list& /*inputs*/) override {
    if (auto s = sync.lock()) {
      s->on_gradient(param);
    }
    return outputs;
  }
};

// DDP's bucket sizes: a small first bucket so the first all-reduce starts soon, then 25 MB.
constexpr int64_t kFirstBucketBytes = 1 << 20;

}  // namespace

extern "C" {

// A gradient sync over `params[0..n)` (leaves that require a gradient) for the group `group`.
// Returns a handle, or null with a message.
void* smtl_sync_new(void* group, at::Tensor** params, size_t n, char* error, size_t error_len) {
  try {
    auto sync = std::make_shared<Sync>();
    sync->group = static_cast<smtl::Group*>(group);
    for (size_t i = 0; i < n; i++) {
      const at::Tensor& p = *params[i];
      sync->params.push_back(p);
      sync->index[p.unsafeGetTensorImpl()] = i;
      auto accumulator = torch::autograd::impl::grad_accumulator(p);
      accumulator->add_post_hook(std::make_unique<AfterAccumulation>(sync, i));
      sync->accumulators.push_back(std::move(accumulator));
    }
    return new std::shared_ptr<Sync>(std::move(sync));
  } catch (const std::exception& e) {
    fail(e, error, error_len);
    return nullptr;
  }
}

void smtl_sync_free(void* handle) {
  delete static_cast<std::shared_ptr<Sync>*>(handle);
}

// Marks in expected[0..n) the parameters whose gradient accumulation the backward of `root`
// reaches (DDP's search for unused parameters). Returns 0, or 1 with a message.
int smtl_sync_expected(void* handle, const at::Tensor* root, uint8_t* expected, char* error, size_t error_len) {
  try {
    auto& sync = **static_cast<std::shared_ptr<Sync>*>(handle);
    std::fill(expected, expected + sync.params.size(), 0);
    std::vector<Node*> stack;
    std::unordered_set<Node*> seen;
    if (auto fn = root->grad_fn()) {
      stack.push_back(fn.get());
    }
    while (!stack.empty()) {
      Node* node = stack.back();
      stack.pop_back();
      if (!seen.insert(node).second) {
        continue;
      }
      if (auto* accumulate = dynamic_cast<torch::autograd::AccumulateGrad*>(node)) {
        auto found = sync.index.find(accumulate->variable.unsafeGetTensorImpl());
        if (found != sync.index.end()) {
          expected[found->second] = 1;
        }
      }
      for (const auto& edge : node->next_edges()) {
        if (edge.function) {
          stack.push_back(edge.function.get());
        }
      }
    }
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, error_len);
  }
}

// Before the step's last backward: `reduced[i]` says whether parameter i has a gradient on
// some rank after it (the same on every rank), `expected[i]` whether this rank's backward
// will produce one. Buckets are formed over the reduced parameters, in reverse order, at most
// `bucket_bytes` each; those with nothing expected are launched at once. Returns 0, or 1 with
// a message.
int smtl_sync_arm(void* handle, const uint8_t* reduced, const uint8_t* expected, int64_t bucket_bytes, char* error,
                  size_t error_len) {
  try {
    auto& sync = **static_cast<std::shared_ptr<Sync>*>(handle);
    std::lock_guard<std::mutex> lock(sync.mutex);
    size_t n = sync.params.size();
    sync.buckets.clear();
    sync.bucket_of.assign(n, -1);
    sync.waiting.assign(n, false);
    sync.launched = 0;
    sync.launched_during_backward = 0;
    sync.error.clear();
    int64_t bytes = 0;
    for (size_t k = n; k-- > 0;) {
      if (!reduced[k]) {
        continue;
      }
      const at::Tensor& p = sync.params[k];
      int64_t size = p.numel() * 4;
      int64_t cap = sync.buckets.size() <= 1 ? kFirstBucketBytes : bucket_bytes;
      bool other_device =
          !sync.buckets.empty() && p.device() != sync.params[sync.buckets.back().members.front()].device();
      if (sync.buckets.empty() || (bytes > 0 && bytes + size > cap) || other_device) {
        sync.buckets.emplace_back();
        bytes = 0;
      }
      Bucket& bucket = sync.buckets.back();
      bucket.members.push_back(k);
      sync.bucket_of[k] = static_cast<ptrdiff_t>(sync.buckets.size() - 1);
      if (expected[k]) {
        sync.waiting[k] = true;
        bucket.pending++;
      }
      bytes += size;
    }
    sync.armed = true;
    sync.launch_ready();
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, error_len);
  }
}

// After the backward: launches the buckets still waiting (a gradient the search expected but
// autograd did not produce counts as zeros), waits for every bucket and writes the sums into
// the parameters' gradients (creating those a rank lacks). `buckets` gets the step's bucket
// count, `launched_during_backward` how many were launched by hooks, before this call.
// Returns 0, or 1 with a message.
int smtl_sync_finish(void* handle, size_t* buckets, size_t* launched_during_backward, char* error, size_t error_len) {
  auto& sync = **static_cast<std::shared_ptr<Sync>*>(handle);
  std::lock_guard<std::mutex> lock(sync.mutex);
  sync.armed = false;
  try {
    *buckets = sync.buckets.size();
    *launched_during_backward = sync.launched_during_backward;
    if (!sync.error.empty()) {
      throw std::runtime_error(sync.error);
    }
    for (size_t b = sync.launched; b < sync.buckets.size(); b++) {
      sync.launch(sync.buckets[b]);
    }
    sync.launched = sync.buckets.size();
    at::NoGradGuard no_grad;
    for (Bucket& bucket : sync.buckets) {
      sync.group->wait(*bucket.work, bucket.nccl);
      int64_t offset = 0;
      for (size_t i : bucket.members) {
        at::Tensor& param = sync.params[i];
        int64_t numel = param.numel();
        at::Tensor summed = bucket.flat.narrow(0, offset, numel).view(param.sizes());
        offset += numel;
        if (param.grad().defined()) {
          param.mutable_grad().copy_(summed);
        } else {
          param.mutable_grad() = summed.to(param.scalar_type()).clone();
        }
      }
    }
    sync.buckets.clear();
    return 0;
  } catch (const std::exception& e) {
    sync.buckets.clear();
    return fail(e, error, error_len);
  }
}

}  // extern "C"
