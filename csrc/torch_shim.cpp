// Small C entry points for libtorch features that tch 0.17 does not expose. Built by
// build.rs against the wheel's headers. Tensors arrive as tch's handles (at::Tensor*).
// No C++ exception crosses this boundary: errors are reported through return values.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/ops/_fused_adamw.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/script.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

// The tensors behind n tch handles, as the list ATen's multi-tensor ops take (the copies
// share storage with the handles' tensors).
static std::vector<at::Tensor> tensor_list(at::Tensor** handles, size_t n) {
  std::vector<at::Tensor> list;
  list.reserve(n);
  for (size_t i = 0; i < n; i++) {
    list.push_back(*handles[i]);
  }
  return list;
}

extern "C" {

// ---- bf16 autocast (tch only enables CUDA autocast, with the fp16 default) ----

static at::DeviceType autocast_device(int cuda) { return cuda ? at::kCUDA : at::kCPU; }

// Enables autocast in bf16 on the CPU (cuda = 0) or CUDA (cuda = 1). Returns the previous
// enabled state (0/1), or -1 on error.
int smtl_autocast_bf16_enter(int cuda) {
  try {
    at::DeviceType device = autocast_device(cuda);
    bool previous = at::autocast::is_autocast_enabled(device);
    at::autocast::set_autocast_dtype(device, at::kBFloat16);
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::increment_nesting();
    return previous ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// Leaves the region opened by smtl_autocast_bf16_enter, restoring the previous state.
void smtl_autocast_bf16_exit(int cuda, int previous) {
  try {
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(autocast_device(cuda), previous == 1);
  } catch (...) {
  }
}

// ---- optimizer support ----

// One fused AdamW update (PyTorch's _fused_adamw_, the kernel behind
// torch.optim.AdamW(fused=True)) of n parameters sharing lr and weight decay. `steps` are
// float scalar tensors, one per parameter, holding the number of updates that parameter has
// had (PyTorch's state["step"]); they are incremented here first, with one foreach call as
// torch.optim does, rather than one kernel per parameter. Returns 0, or 1 with a message.
int smtl_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs,
                     at::Tensor** steps, size_t n, double lr, double beta1, double beta2, double weight_decay,
                     double eps, char* error, size_t error_len) {
  try {
    std::vector<at::Tensor> p = tensor_list(params, n), g = tensor_list(grads, n), m = tensor_list(exp_avgs, n),
                            v = tensor_list(exp_avg_sqs, n), s = tensor_list(steps, n);
    at::NoGradGuard no_grad;
    at::_foreach_add_(s, 1);
    at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps, false, false);
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(error, error_len, "%s", e.what());
    return 1;
  }
}

// Clips n gradients to a global L2 norm of at most max_norm (max_norm <= 0: only measures),
// as torch.nn.utils.clip_grad_norm_ does: per-tensor norms with one foreach call, their norm,
// and one foreach multiply, instead of a kernel per tensor for each (on a GPU, where a
// training step is mostly kernel launches, that is two launches per parameter saved).
// The clipping factor stays on the device (min(1, max_norm / (norm + 1e-6)), multiplied in
// whatever it is, as torch.nn.utils.clip_grad_norm_ does): reading the norm back would make
// the host wait for the GPU every step. Returns the norm before clipping as a new 0-dim
// tensor on the gradients' device, or null with a message.
at::Tensor* smtl_clip_grad_norm(at::Tensor** grads, size_t n, double max_norm, char* error, size_t error_len) {
  try {
    std::vector<at::Tensor> g = tensor_list(grads, n);
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> norms = at::_foreach_norm(g, 2);
    at::Tensor total = at::linalg_vector_norm(at::stack(norms), 2);
    if (max_norm > 0) {
      at::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
      at::_foreach_mul_(g, coef);
    }
    return new at::Tensor(std::move(total));
  } catch (const std::exception& e) {
    std::snprintf(error, error_len, "%s", e.what());
    return nullptr;
  }
}

// Drops a tensor's gradient (PyTorch's zero_grad(set_to_none=True)): a parameter that gets
// no gradient in the next step is then skipped by the optimizer, as in PyTorch.
void smtl_grad_set_to_none(at::Tensor* tensor) {
  try {
    tensor->mutable_grad().reset();
  } catch (...) {
  }
}

// ---- CPU kernel choice ----

// Lets CPU ops use oneDNN (enabled = 1, libtorch's default) or not (0), as PyTorch's
// torch.backends.mkldnn.enabled does.
void smtl_set_onednn_enabled(int enabled) {
  at::globalContext().setUserEnabledMkldnn(enabled != 0);
}

// ---- tensors over memory libtorch does not own ----

// Calls release(context) when destroyed: the one owner of a borrowed buffer's reference.
struct ExternalRelease {
  void (*release)(void*);
  void* context;
  ~ExternalRelease() { release(context); }
};

// A tensor sharing `view`'s memory, shape, strides and dtype whose storage, when libtorch
// frees it, calls release(context) (tch's from_blob tensors never tell their owner). The
// caller hands over one reference with `context`: release is called exactly once, also
// when this fails. Returns a new handle, or null with a message.
at::Tensor* smtl_tensor_with_release(at::Tensor* view, void (*release)(void*), void* context, char* error,
                                     size_t error_len) {
  try {
    std::shared_ptr<ExternalRelease> owner(new ExternalRelease{release, context});
    at::Tensor tensor =
        at::from_blob(view->data_ptr(), view->sizes(), view->strides(), [owner](void*) {}, view->options());
    return new at::Tensor(std::move(tensor));
  } catch (const std::exception& e) {
    std::snprintf(error, error_len, "%s", e.what());
    return nullptr;
  }
}

// ---- TorchScript export ----

// Wraps the traced module saved at `traced_path` (one output tensor) as submodule `traced`
// of a new module whose methods are compiled from TorchScript `source` (e.g. a forward that
// splits the output into a tuple, which tch's tracer cannot return), and streams the saved
// module to `sink(sink_context, bytes, len)`, which must return `len`. Not to a file:
// libtorch's file writer throws from a destructor when a disk fills, which no catch can
// stop from aborting; the sink reports its own errors. Returns 0, or 1 with a message.
int smtl_wrap_traced_module(const char* traced_path, const char* source,
                            size_t (*sink)(void*, const char*, size_t), void* sink_context, char* error,
                            size_t error_len) {
  try {
    torch::jit::Module traced = torch::jit::load(traced_path);
    torch::jit::Module wrapper("SentenceMtl");
    wrapper.register_module("traced", traced);
    wrapper.define(source);
    wrapper.eval();
    const std::function<size_t(const void*, size_t)> writer = [&](const void* bytes, size_t len) {
      return sink(sink_context, static_cast<const char*>(bytes), len);
    };
    torch::jit::ExportModule(wrapper, writer);
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(error, error_len, "%s", e.what());
    return 1;
  }
}

}  // extern "C"
