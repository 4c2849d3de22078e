// bf16 autocast on CUDA for the training forward pass. tch exposes autocast only with
// libtorch's default CUDA dtype (fp16); this sets bf16 explicitly. Built by build.rs.
#include <ATen/autocast_mode.h>

extern "C" {

// Enables CUDA autocast in bf16. Returns the previous enabled state (0/1), or -1 on error.
int smtl_autocast_bf16_enter() {
  try {
    bool previous = at::autocast::is_autocast_enabled(at::kCUDA);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::increment_nesting();
    return previous ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// Leaves the region opened by smtl_autocast_bf16_enter, restoring the previous state.
void smtl_autocast_bf16_exit(int previous) {
  try {
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(at::kCUDA, previous == 1);
  } catch (...) {
  }
}

}  // extern "C"
