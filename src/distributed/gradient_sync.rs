//! A training step's gradient all-reduce, overlapped with its last backward pass as PyTorch
//! DDP's Reducer does it (`csrc/gradient_sync.cpp`): the buckets of gradients that backward
//! has finished are summed across ranks while autograd computes the rest. Earlier batches of
//! an accumulated step only accumulate locally (DDP's `no_sync`).

use std::ffi::c_void;

use anyhow::{bail, Result};
use tch::Tensor;

use super::group::{ErrorBuffer, ProcessGroup, Reduce};

extern "C" {
    fn smtl_sync_new(
        group: *mut c_void,
        params: *const *mut torch_sys::C_tensor,
        n: usize,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> *mut c_void;
    fn smtl_sync_free(handle: *mut c_void);
    fn smtl_sync_expected(
        handle: *mut c_void,
        root: *const torch_sys::C_tensor,
        expected: *mut u8,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> i32;
    fn smtl_sync_arm(
        handle: *mut c_void,
        reduced: *const u8,
        expected: *const u8,
        bucket_bytes: i64,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> i32;
    fn smtl_sync_finish(
        handle: *mut c_void,
        buckets: *mut usize,
        launched_during_backward: *mut usize,
        error: *mut libc::c_char,
        error_len: usize,
    ) -> i32;
}

/// Gradient bytes per all-reduce after the first (PyTorch DDP's default `bucket_cap_mb` is
/// 25; its first bucket, as ours, holds 1 MB).
pub const BUCKET_BYTES: i64 = 25 << 20;

/// What one synchronised backward did.
pub struct SyncedBackward {
    /// The step's scalars (token counts), summed across ranks.
    pub scalars: Vec<f64>,
    /// Buckets all-reduced, and how many of them started before the backward pass returned.
    pub buckets: usize,
    pub overlapped_buckets: usize,
}

/// The gradient all-reduce of the parameters an optimizer updates, hooked into autograd.
pub struct GradientSync<'g> {
    group: &'g ProcessGroup,
    handle: *mut c_void,
    parameters: Vec<Tensor>,
}

impl<'g> GradientSync<'g> {
    /// Hooks the gradient accumulation of `parameters` (leaves that require a gradient, in
    /// the same order on every rank).
    pub fn new(group: &'g ProcessGroup, parameters: Vec<Tensor>) -> Result<Self> {
        let pointers: Vec<*mut torch_sys::C_tensor> = parameters.iter().map(|p| p.as_ptr() as *mut _).collect();
        let mut error = ErrorBuffer::new();
        // SAFETY: live tch handles, copied on the C++ side; exceptions are caught there.
        let handle = unsafe {
            smtl_sync_new(group.handle(), pointers.as_ptr(), pointers.len(), error.0.as_mut_ptr(), error.0.len())
        };
        if handle.is_null() {
            bail!("rank {}: cannot hook the gradients for their all-reduce: {}", group.rank(), error.message());
        }
        Ok(Self { group, handle, parameters })
    }

    /// The step's last backward, of `root` (`None` when this rank's share of the batch was
    /// empty), after which every rank holds the same gradients: their sum across ranks. A
    /// parameter that has a gradient on some rank gets the sum on all of them; one that has
    /// none anywhere keeps none (the optimizer skips it, as in one process). Before the
    /// backward, one small all-reduce sums `scalars` and says which parameters will have a
    /// gradient anywhere (it is also where a rank that stopped is noticed, between steps).
    pub fn backward(&self, root: Option<&Tensor>, scalars: &[f64]) -> Result<SyncedBackward> {
        let expected = match root {
            Some(root) => self.expected(root)?,
            None => vec![0; self.parameters.len()],
        };
        let mut header: Vec<f64> = self
            .parameters
            .iter()
            .zip(&expected)
            .map(|(p, e)| f64::from(u8::from(p.grad().defined() || *e != 0)))
            .collect();
        header.extend_from_slice(scalars);
        let mut header_tensor = Tensor::from_slice(&header);
        self.group.all_reduce_(&mut header_tensor, Reduce::Sum, "the all-reduce of the step's token counts")?;
        let header = Vec::<f64>::try_from(&header_tensor)?;
        let (flags, sums) = header.split_at(self.parameters.len());
        let reduced: Vec<u8> = flags.iter().map(|f| u8::from(*f > 0.0)).collect();
        let mut error = ErrorBuffer::new();
        // SAFETY: arrays of one byte per parameter and a writable buffer; exceptions are caught.
        let rc = unsafe {
            smtl_sync_arm(
                self.handle,
                reduced.as_ptr(),
                expected.as_ptr(),
                BUCKET_BYTES,
                error.0.as_mut_ptr(),
                error.0.len(),
            )
        };
        self.group.check(rc, &error, "the gradient all-reduce")?;
        let backward = root.map_or(Ok(()), Tensor::f_backward);
        let (mut buckets, mut overlapped_buckets) = (0, 0);
        // Always finished, so that no all-reduce is left in flight (and the other ranks are
        // not left waiting for this one's buckets) when the backward failed.
        // SAFETY: a writable count and buffer; exceptions are caught on the C++ side.
        let rc = unsafe {
            smtl_sync_finish(self.handle, &mut buckets, &mut overlapped_buckets, error.0.as_mut_ptr(), error.0.len())
        };
        backward?;
        self.group.check(rc, &error, "the gradient all-reduce")?;
        Ok(SyncedBackward { scalars: sums.to_vec(), buckets, overlapped_buckets })
    }

    /// Per parameter, whether the backward of `root` reaches its gradient accumulation.
    fn expected(&self, root: &Tensor) -> Result<Vec<u8>> {
        let mut expected = vec![0u8; self.parameters.len()];
        let mut error = ErrorBuffer::new();
        // SAFETY: a live tch handle, one byte per parameter, a writable buffer.
        let rc = unsafe {
            smtl_sync_expected(self.handle, root.as_ptr(), expected.as_mut_ptr(), error.0.as_mut_ptr(), error.0.len())
        };
        if rc != 0 {
            bail!(
                "rank {}: cannot search the backward graph for its gradients: {}",
                self.group.rank(),
                error.message()
            );
        }
        Ok(expected)
    }
}

impl Drop for GradientSync<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle came from smtl_sync_new and is freed once.
        unsafe { smtl_sync_free(self.handle) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::Launch;
    use std::time::Duration;
    use tch::{nn, nn::Module, Device, Kind};

    /// A launch of one on a free loopback port: its sums are the gradients themselves.
    fn group_of_one() -> ProcessGroup {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let launch = Launch {
            rank: 0,
            world: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: port,
            agent_store_prefix: None,
            gloo_interfaces: None,
        };
        ProcessGroup::join(&launch, Duration::from_secs(30)).unwrap()
    }

    #[test]
    fn buckets_are_all_reduced_while_backward_runs_and_leave_the_gradients_of_one_rank() {
        let group = group_of_one();
        let vs = nn::VarStore::new(Device::Cpu);
        // Three 1.4 MB layers: the first bucket (1 MB) fills with the last layer's weight,
        // whose gradient arrives while the other layers' are still being computed.
        let layers: Vec<nn::Linear> =
            (0..3).map(|i| nn::linear(vs.root() / format!("layer{i}"), 600, 600, Default::default())).collect();
        let unused = vs.root().var("unused", &[10], nn::Init::Const(1.0));
        let mut parameters: Vec<Tensor> =
            layers.iter().flat_map(|l| [l.ws.shallow_clone(), l.bs.as_ref().unwrap().shallow_clone()]).collect();
        parameters.push(unused.shallow_clone());
        let input = Tensor::randn([8, 600], (Kind::Float, Device::Cpu));
        let loss = || layers.iter().fold(input.shallow_clone(), |x, l| l.forward(&x).relu()).sum(Kind::Float);

        loss().backward();
        let plain: Vec<Tensor> = parameters[..6].iter().map(|p| p.grad().copy()).collect();
        for p in &parameters[..6] {
            let _ = p.grad().zero_();
        }
        let sync = GradientSync::new(&group, parameters.iter().map(Tensor::shallow_clone).collect()).unwrap();
        let synced = sync.backward(Some(&loss()), &[2.5]).unwrap();

        assert_eq!(synced.scalars, vec![2.5]);
        assert!(synced.buckets >= 2, "{} buckets", synced.buckets);
        assert!(synced.overlapped_buckets >= 1, "no bucket was all-reduced during backward");
        for (p, expected) in parameters.iter().zip(&plain) {
            assert!(p.grad().equal(expected), "a gradient changed in the all-reduce of one rank");
        }
        assert!(!unused.grad().defined(), "a parameter outside the graph was given a gradient");
    }
}
