//! Rust side of `csrc/torch_shim.cpp`: libtorch features tch 0.17 does not expose.

use anyhow::{bail, Result};
use tch::Tensor;

extern "C" {
    fn smtl_autocast_bf16_enter(cuda: i32) -> i32;
    fn smtl_autocast_bf16_exit(cuda: i32, previous: i32);
    fn smtl_fused_adamw(
        params: *mut *mut torch_sys::C_tensor,
        grads: *mut *mut torch_sys::C_tensor,
        exp_avgs: *mut *mut torch_sys::C_tensor,
        exp_avg_sqs: *mut *mut torch_sys::C_tensor,
        steps: *mut *mut torch_sys::C_tensor,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> i32;
    fn smtl_clip_grad_norm(
        grads: *mut *mut torch_sys::C_tensor,
        n: usize,
        max_norm: f64,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> *mut torch_sys::C_tensor;
    fn smtl_grad_set_to_none(tensor: *mut torch_sys::C_tensor);
    fn smtl_set_onednn_enabled(enabled: i32);
    fn smtl_tensor_with_release(
        view: *mut torch_sys::C_tensor,
        release: extern "C" fn(*mut libc::c_void),
        context: *mut libc::c_void,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> *mut torch_sys::C_tensor;
    fn smtl_wrap_traced_module(
        traced_path: *const libc::c_char,
        source: *const libc::c_char,
        sink: extern "C" fn(*mut libc::c_void, *const libc::c_char, usize) -> usize,
        sink_context: *mut libc::c_void,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> i32;
}

/// Runs `f` with autocast enabled in bf16 for `device`'s type (CPU or CUDA), restoring the
/// previous state afterwards.
pub fn with_bf16_autocast<T>(device: tch::Device, f: impl FnOnce() -> T) -> T {
    let cuda = i32::from(device.is_cuda());
    // SAFETY: plain C functions that catch every C++ exception.
    let previous = unsafe { smtl_autocast_bf16_enter(cuda) };
    let result = f();
    // SAFETY: as above.
    unsafe { smtl_autocast_bf16_exit(cuda, previous.max(0)) };
    result
}

/// The tensors of one fused AdamW call; all on one device, same dtype.
pub struct AdamwTensors<'a> {
    pub params: Vec<&'a mut Tensor>,
    pub grads: Vec<Tensor>,
    pub exp_avgs: Vec<&'a mut Tensor>,
    pub exp_avg_sqs: Vec<&'a mut Tensor>,
    /// Per-parameter update counts (float scalars on the parameter's device), which this
    /// call increments before the update, as `torch.optim.AdamW` does.
    pub steps: Vec<&'a mut Tensor>,
}

pub struct AdamwHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

/// One AdamW update with PyTorch's fused kernel (`torch.optim.AdamW(fused=True)`): the
/// same formula as the for-loop implementation, in one pass over each parameter.
pub fn fused_adamw(tensors: AdamwTensors, hyper: &AdamwHyper) -> Result<()> {
    let AdamwTensors { mut params, mut grads, mut exp_avgs, mut exp_avg_sqs, mut steps } = tensors;
    let n = params.len();
    assert!(
        grads.len() == n && exp_avgs.len() == n && exp_avg_sqs.len() == n && steps.len() == n,
        "one of each per parameter"
    );
    if n == 0 {
        return Ok(());
    }
    let mut p: Vec<_> = params.iter_mut().map(|t| t.as_mut_ptr()).collect();
    let mut g: Vec<_> = grads.iter_mut().map(|t| t.as_mut_ptr()).collect();
    let mut m: Vec<_> = exp_avgs.iter_mut().map(|t| t.as_mut_ptr()).collect();
    let mut v: Vec<_> = exp_avg_sqs.iter_mut().map(|t| t.as_mut_ptr()).collect();
    let mut s: Vec<_> = steps.iter_mut().map(|t| t.as_mut_ptr()).collect();
    let mut error = vec![0 as libc::c_char; 512];
    // SAFETY: every pointer is a live tch tensor handle (at::Tensor*) borrowed for the call;
    // the C++ side copies the handles and catches all exceptions.
    let rc = unsafe {
        smtl_fused_adamw(
            p.as_mut_ptr(),
            g.as_mut_ptr(),
            m.as_mut_ptr(),
            v.as_mut_ptr(),
            s.as_mut_ptr(),
            n,
            hyper.lr,
            hyper.beta1,
            hyper.beta2,
            hyper.weight_decay,
            hyper.eps,
            error.as_mut_ptr(),
            error.len(),
        )
    };
    if rc != 0 {
        bail!("AdamW step failed: {}", first_line(&error));
    }
    Ok(())
}

/// Scales `grads` in place so their global L2 norm is at most `max_norm` (`max_norm <= 0`:
/// no clipping), as `torch.nn.utils.clip_grad_norm_`, with PyTorch's foreach kernels; returns
/// the norm before clipping, a 0-dim tensor on the gradients' device (nothing is read back).
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Result<Tensor> {
    if grads.is_empty() {
        return Ok(Tensor::from(0f32));
    }
    let mut g: Vec<_> = grads.iter_mut().map(|t| t.as_mut_ptr()).collect();
    let mut error = vec![0 as libc::c_char; 512];
    // SAFETY: live tch tensor handles borrowed for the call and a writable buffer; the C++
    // side catches all exceptions and returns a new at::Tensor* or null.
    let total = unsafe { smtl_clip_grad_norm(g.as_mut_ptr(), g.len(), max_norm, error.as_mut_ptr(), error.len()) };
    if total.is_null() {
        bail!("gradient clipping failed: {}", first_line(&error));
    }
    // SAFETY: a non-null handle is a new at::Tensor* that nothing else owns.
    Ok(unsafe { Tensor::from_ptr(total) })
}

/// The first non-empty line of a NUL-terminated message the C++ side wrote into `buffer`
/// (libtorch's messages go on with a C++ backtrace).
pub(crate) fn first_line(buffer: &[libc::c_char]) -> String {
    // SAFETY: the buffer was zero-filled and the C++ side writes with snprintf, so it holds a
    // NUL-terminated string.
    let message = unsafe { std::ffi::CStr::from_ptr(buffer.as_ptr()) }.to_string_lossy();
    message.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string()
}

/// Drops the tensor's gradient, as PyTorch's `zero_grad(set_to_none=True)`.
pub fn grad_set_to_none(tensor: &mut Tensor) {
    // SAFETY: a live tch tensor handle; the C++ side catches all exceptions.
    unsafe { smtl_grad_set_to_none(tensor.as_mut_ptr()) }
}

/// Lets CPU ops use oneDNN or not, as PyTorch's `torch.backends.mkldnn.enabled` (on by default).
pub fn set_onednn_enabled(enabled: bool) {
    // SAFETY: sets one flag in libtorch's global context; no exception is thrown.
    unsafe { smtl_set_onednn_enabled(enabled as i32) }
}

/// A tensor over `view`'s memory (same shape, strides, dtype) whose storage calls
/// `release(context)` once libtorch frees it, so that the owner of memory libtorch did not
/// allocate learns when the last tensor over it is gone.
///
/// # Safety
/// `view`'s memory must stay valid until `release(context)` runs. Ownership of `context`
/// passes to this call: `release(context)` runs exactly once, also when this returns an error.
pub unsafe fn tensor_with_release(
    view: &Tensor,
    release: extern "C" fn(*mut libc::c_void),
    context: *mut libc::c_void,
) -> Result<Tensor> {
    let mut error = vec![0 as libc::c_char; 512];
    // SAFETY: a live tch handle and a writable buffer; the C++ side catches all exceptions and
    // returns a new at::Tensor* (or null), which from_ptr takes over.
    let handle =
        unsafe { smtl_tensor_with_release(view.as_ptr() as *mut _, release, context, error.as_mut_ptr(), error.len()) };
    if handle.is_null() {
        bail!("cannot wrap memory as a tensor: {}", first_line(&error));
    }
    // SAFETY: a non-null handle is a new at::Tensor* that nothing else owns.
    Ok(unsafe { Tensor::from_ptr(handle) })
}

/// Writes to `out` a saved TorchScript module holding the traced module at `traced` as
/// submodule `traced`, with methods compiled from TorchScript `source`.
pub fn wrap_traced_module(traced: &std::path::Path, source: &str, out: &mut dyn std::io::Write) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    struct Sink<'a> {
        out: &'a mut dyn std::io::Write,
        failed: Option<std::io::Error>,
    }
    extern "C" fn write(context: *mut libc::c_void, bytes: *const libc::c_char, len: usize) -> usize {
        // SAFETY: `context` is the `Sink` below, borrowed for the call; `bytes` holds `len`.
        let (sink, bytes) =
            unsafe { (&mut *(context as *mut Sink), std::slice::from_raw_parts(bytes as *const u8, len)) };
        if sink.failed.is_none() {
            sink.failed = sink.out.write_all(bytes).err();
        }
        // Always all of it: a short count makes libtorch throw where it cannot be caught.
        len
    }
    let traced = CString::new(traced.as_os_str().as_bytes())?;
    let source = CString::new(source)?;
    let mut sink = Sink { out, failed: None };
    let mut error = vec![0 as libc::c_char; 2048];
    // SAFETY: valid NUL-terminated strings, a writable buffer, and a sink that outlives the
    // call; exceptions are caught in C++.
    let rc = unsafe {
        smtl_wrap_traced_module(
            traced.as_ptr(),
            source.as_ptr(),
            write,
            &mut sink as *mut Sink as *mut libc::c_void,
            error.as_mut_ptr(),
            error.len(),
        )
    };
    if let Some(e) = sink.failed {
        return Err(e.into());
    }
    if rc != 0 {
        bail!("cannot build the TorchScript module: {}", first_line(&error));
    }
    Ok(())
}
