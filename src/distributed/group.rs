//! A c10d process group (`csrc/c10d_shim.cpp`): the TCPStore rendezvous at
//! `MASTER_ADDR:MASTER_PORT` (served by rank 0), Gloo between every pair of ranks, NCCL for
//! CUDA tensors where the build has it (as PyTorch's default "cpu:gloo,cuda:nccl" group), and
//! the collectives data-parallel training and sharded inference use. A collective that fails
//! names the rank that stopped, found by a roll call in the store.

use std::ffi::{c_void, CString};
use std::sync::atomic::AtomicI32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Result};
use tch::Tensor;

use super::joining::{join_failure, refuse_unknown_interfaces, JoinWatchdog};
use super::launch::Launch;
use super::nccl;
use crate::torch_shim::first_line;

extern "C" {
    fn smtl_group_join(
        host: *const libc::c_char,
        port: i32,
        rank: i32,
        size: i32,
        build: *const libc::c_char,
        timeout_ms: i64,
        prefix: *const libc::c_char,
        interfaces: *const libc::c_char,
        bind_host: *const libc::c_char,
        store_answered: *mut i32,
        cause: *mut i32,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> *mut c_void;
    fn smtl_group_attach_cuda_backend(
        handle: *mut c_void,
        factory: *mut c_void,
        shutdown: *mut c_void,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> i32;
    fn smtl_group_free(handle: *mut c_void);
    fn smtl_group_all_reduce(
        handle: *mut c_void,
        tensor: *mut torch_sys::C_tensor,
        op: i32,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> i32;
    fn smtl_group_broadcast(
        handle: *mut c_void,
        tensor: *mut torch_sys::C_tensor,
        root: i32,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> i32;
    fn smtl_group_all_gather(
        handle: *mut c_void,
        input: *mut torch_sys::C_tensor,
        outputs: *mut *mut torch_sys::C_tensor,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> i32;
    fn smtl_group_roll_call(
        handle: *mut c_void,
        wait_ms: i64,
        missing: *mut i32,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> i32;
}

/// How an all-reduce combines the ranks' tensors.
#[derive(Debug, Clone, Copy)]
pub enum Reduce {
    Sum,
    Max,
}

/// This process's membership of the launch's process group.
pub struct ProcessGroup {
    handle: *mut c_void,
    pub launch: Launch,
    timeout: Duration,
    /// Which backend CUDA tensors use, decided at the first CUDA collective.
    cuda_backend: OnceLock<Result<CudaBackend, String>>,
}

/// The backend of a group's CUDA tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CudaBackend {
    Nccl,
    /// A build without NCCL: Gloo copies CUDA tensors through the host.
    Gloo,
}

/// A message buffer for the C++ side, and its first line once written.
pub(super) struct ErrorBuffer(pub(super) Vec<libc::c_char>);

impl ErrorBuffer {
    pub(super) fn new() -> Self {
        Self(vec![0; 2048])
    }

    pub(super) fn message(&self) -> String {
        first_line(&self.0)
    }
}

impl ProcessGroup {
    /// Joins the launch's process group; every rank must call this, and it returns once all
    /// have (or fails after `timeout`). Gloo listens on the interfaces `GLOO_SOCKET_IFNAME`
    /// names, else on loopback when the rendezvous host is loopback, else on the address this
    /// machine's hostname resolves to (as in PyTorch).
    pub fn join(launch: &Launch, timeout: Duration) -> Result<Self> {
        let host = CString::new(launch.master_addr.as_str())?;
        let loopback = matches!(launch.master_addr.as_str(), "127.0.0.1" | "localhost" | "::1");
        let bind = CString::new(if loopback { launch.master_addr.as_str() } else { "" })?;
        let interfaces = CString::new(launch.gloo_interfaces.as_deref().unwrap_or(""))?;
        if let Some(names) = &launch.gloo_interfaces {
            refuse_unknown_interfaces(names)?;
        }
        let prefix = CString::new(launch.agent_store_prefix.as_deref().unwrap_or(""))?;
        let build = CString::new(format!("sentence-mtl {}", crate::VERSION))?;
        let mut error = ErrorBuffer::new();
        let mut cause = 0;
        let store_answered = Arc::new(AtomicI32::new(0));
        let watchdog = JoinWatchdog::start(launch, timeout, Arc::clone(&store_answered));
        // SAFETY: NUL-terminated strings, a writable int and buffer; the C++ side catches
        // every exception and returns a new handle or null.
        let handle = unsafe {
            smtl_group_join(
                host.as_ptr(),
                launch.master_port as i32,
                launch.rank as i32,
                launch.world as i32,
                build.as_ptr(),
                timeout.as_millis() as i64,
                prefix.as_ptr(),
                interfaces.as_ptr(),
                bind.as_ptr(),
                store_answered.as_ptr(),
                &mut cause,
                error.0.as_mut_ptr(),
                error.0.len(),
            )
        };
        watchdog.stop();
        if handle.is_null() {
            return Err(join_failure(launch, timeout, cause, &error.message()));
        }
        Ok(Self { handle, launch: launch.clone(), timeout, cuda_backend: OnceLock::new() })
    }

    pub fn rank(&self) -> usize {
        self.launch.rank
    }

    pub fn world(&self) -> usize {
        self.launch.world
    }

    /// The backend for `tensor`'s collectives is ready: for the first CUDA tensor, NCCL is
    /// loaded and attached (every rank reaches the same collectives with tensors on the same
    /// kind of device, so all attach it together; making it does not communicate).
    fn prepare_for(&self, tensor: &Tensor) -> Result<()> {
        if !tensor.device().is_cuda() {
            return Ok(());
        }
        let chosen = self.cuda_backend.get_or_init(|| {
            let Some(entry) = nccl::entry_points()? else { return Ok(CudaBackend::Gloo) };
            let mut error = ErrorBuffer::new();
            // SAFETY: the shim's two entry points, with the signatures csrc/c10d_shim.cpp
            // expects; exceptions are caught on the C++ side.
            let rc = unsafe {
                smtl_group_attach_cuda_backend(
                    self.handle,
                    entry.make_backend,
                    entry.shutdown,
                    error.0.as_mut_ptr(),
                    error.0.len(),
                )
            };
            if rc == 0 {
                Ok(CudaBackend::Nccl)
            } else {
                Err(error.message())
            }
        });
        match chosen {
            Ok(_) => Ok(()),
            Err(why) => bail!("rank {}: cannot start NCCL for the CUDA tensors of this run: {why}", self.rank()),
        }
    }

    /// Which c10d backend carried the collectives so far, in words.
    pub fn backend_name(&self) -> &'static str {
        match self.cuda_backend.get() {
            Some(Ok(CudaBackend::Nccl)) => "NCCL",
            Some(Ok(CudaBackend::Gloo)) => "Gloo: this build has no NCCL",
            _ => "Gloo",
        }
    }

    /// Combines `tensor` (contiguous, same shape on every rank) across ranks, in place.
    pub fn all_reduce_(&self, tensor: &mut Tensor, op: Reduce, what: &str) -> Result<()> {
        self.prepare_for(tensor)?;
        let op = match op {
            Reduce::Sum => 0,
            Reduce::Max => 1,
        };
        let mut error = ErrorBuffer::new();
        // SAFETY: a live tch handle and a writable buffer; exceptions are caught in C++.
        let rc =
            unsafe { smtl_group_all_reduce(self.handle, tensor.as_mut_ptr(), op, error.0.as_mut_ptr(), error.0.len()) };
        self.check(rc, &error, what)
    }

    /// Replaces `tensor` on every rank by rank `root`'s.
    pub fn broadcast_(&self, tensor: &mut Tensor, root: usize, what: &str) -> Result<()> {
        self.prepare_for(tensor)?;
        let mut error = ErrorBuffer::new();
        // SAFETY: as in all_reduce_.
        let rc = unsafe {
            smtl_group_broadcast(self.handle, tensor.as_mut_ptr(), root as i32, error.0.as_mut_ptr(), error.0.len())
        };
        self.check(rc, &error, what)
    }

    /// Every rank's `tensor` (same shape and kind on every rank), in rank order.
    pub fn all_gather(&self, tensor: &Tensor, what: &str) -> Result<Vec<Tensor>> {
        self.prepare_for(tensor)?;
        let input = tensor.contiguous();
        let mut outputs: Vec<Tensor> = (0..self.world()).map(|_| input.empty_like()).collect();
        let mut pointers: Vec<_> = outputs.iter_mut().map(|t| t.as_mut_ptr()).collect();
        let mut error = ErrorBuffer::new();
        // SAFETY: live tch handles (one per rank) and a writable buffer; exceptions are caught.
        let rc = unsafe {
            smtl_group_all_gather(
                self.handle,
                input.as_ptr() as *mut _,
                pointers.as_mut_ptr(),
                error.0.as_mut_ptr(),
                error.0.len(),
            )
        };
        self.check(rc, &error, what)?;
        Ok(outputs)
    }

    /// The C++ handle, for `gradient_sync`.
    pub(super) fn handle(&self) -> *mut c_void {
        self.handle
    }

    /// `Ok` for a return code of 0, else the error of a failed collective (see `failure`).
    pub(super) fn check(&self, rc: i32, error: &ErrorBuffer, what: &str) -> Result<()> {
        if rc == 0 {
            return Ok(());
        }
        Err(self.failure(what, &error.message()))
    }

    /// The error for a failed collective: which ranks stopped, from a roll call in the store
    /// (rank 0 holds the store, or torchrun's agent does: when it is gone, that one stopped).
    fn failure(&self, what: &str, message: &str) -> anyhow::Error {
        let me = self.rank();
        let wait = self.timeout.min(Duration::from_secs(10));
        let mut missing = vec![0i32; self.world()];
        let mut error = ErrorBuffer::new();
        // SAFETY: a writable array of `world` ints and a buffer; exceptions are caught in C++.
        let rc = unsafe {
            smtl_group_roll_call(
                self.handle,
                wait.as_millis() as i64,
                missing.as_mut_ptr(),
                error.0.as_mut_ptr(),
                error.0.len(),
            )
        };
        let stopped: Vec<String> =
            missing.iter().enumerate().filter(|(r, m)| **m != 0 && *r != me).map(|(r, _)| r.to_string()).collect();
        let who = if rc != 0 {
            format!(
                "{} stopped (the rendezvous store at {}:{} is gone)",
                super::joining::store_host(&self.launch),
                self.launch.master_addr,
                self.launch.master_port
            )
        } else if stopped.is_empty() {
            // A rank's answer stays in the store after it exits, so a rank that answered an
            // earlier roll call and then stopped looks present: the cause in brackets tells.
            "every rank has answered a roll call, but it did not complete (a rank that stopped after answering one still counts as present)".to_string()
        } else {
            let plural = if stopped.len() > 1 { "s" } else { "" };
            // A live rank busy past the roll call's wait (saving a large checkpoint to a slow
            // disk) cannot answer either: the roll call cannot tell it from a dead one.
            let is = if stopped.len() > 1 { "are" } else { "is" };
            format!(
                "rank{plural} {} stopped, cannot be reached, or {is} still busy (no answer to a roll call)",
                stopped.join(", ")
            )
        };
        CollectiveFailed(format!("rank {me}: {what} failed: {who} ({})", without_source_location(message))).into()
    }
}

/// A collective that did not complete: a rank stopped, cannot be reached, or was too slow.
#[derive(Debug)]
pub struct CollectiveFailed(String);

impl std::fmt::Display for CollectiveFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CollectiveFailed {}

/// Gloo's and c10d's message without the `[file.cc:123] ` of the C++ source that raised it.
fn without_source_location(message: &str) -> &str {
    let trimmed = message.trim_start();
    match trimmed.strip_prefix('[').and_then(|rest| rest.split_once("] ")) {
        Some((location, rest))
            if location.contains(".cc:") || location.contains(".cpp:") || location.contains(".h:") =>
        {
            rest.trim_start()
        }
        _ => trimmed,
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the handle came from smtl_group_join and is freed once.
        unsafe { smtl_group_free(self.handle) }
    }
}

#[cfg(test)]
mod tests {
    use super::without_source_location;

    #[test]
    fn gloo_messages_lose_their_source_location_only() {
        let gloo = "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4242";
        assert_eq!(without_source_location(gloo), "Connection closed by peer [127.0.0.1]:4242");
        assert_eq!(without_source_location("[127.0.0.1]:4242 refused"), "[127.0.0.1]:4242 refused");
        assert_eq!(without_source_location("Timed out"), "Timed out");
    }
}
