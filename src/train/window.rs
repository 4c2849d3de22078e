//! The logging window: what the steps since the last log line trained, their losses and
//! gradient norms, which stay on the device until the window is read. Reading a value back
//! makes the host wait for the GPU; here that happens once per window (and before every
//! save), in one transfer, and the first loss or gradient norm that is not finite is still
//! found with its step and task.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::distributed::{ProcessGroup, Reduce};

/// A batch's loss (a 0-dim tensor, maybe on the GPU) not read yet.
struct PendingLoss {
    step: usize,
    task: usize,
    loss: Tensor,
}

/// A step's global gradient norm before clipping (0-dim, maybe on the GPU) not read yet.
struct PendingNorm {
    step: usize,
    tasks: Vec<usize>,
    norm: Tensor,
}

/// The first value of a window that was NaN or infinite: a batch's loss, or else a step's
/// gradient norm (finite losses can still give gradients that overflow, as a huge task
/// weight does; clipping then scales the step to nothing, or to NaN weights).
pub enum NonFinite {
    Loss { step: usize, task: usize, value: f64 },
    GradNorm { step: usize, tasks: Vec<usize>, value: f64 },
}

pub struct Window {
    pending: Vec<PendingLoss>,
    pending_norms: Vec<PendingNorm>,
    loss_sum: Vec<f64>,
    batches: Vec<usize>,
    pub examples: usize,
    pub tokens: usize,
    grad_norm: f64,
    /// Seconds spent in the window's steps (and reading their losses back): not the
    /// evaluations and saves between them, which would make throughput dip after each.
    pub seconds: f64,
}

/// The losses a window has read back so far, saved with a resumable checkpoint: the first
/// log line of a run resumed mid-window then has the same mean losses as the uninterrupted
/// run's (its examples and tokens per second cover the steps since the resumption).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowTotals {
    loss_sum: Vec<f64>,
    batches: Vec<usize>,
    grad_norm: f64,
}

impl Window {
    pub fn new(tasks: usize) -> Self {
        Self {
            pending: Vec::new(),
            pending_norms: Vec::new(),
            loss_sum: vec![0.0; tasks],
            batches: vec![0; tasks],
            examples: 0,
            tokens: 0,
            grad_norm: 0.0,
            seconds: 0.0,
        }
    }

    /// A window of `tasks` tasks that goes on from `totals` (when they are of as many tasks).
    pub fn resumed(tasks: usize, totals: Option<WindowTotals>) -> Self {
        match totals {
            Some(t) if t.loss_sum.len() == tasks && t.batches.len() == tasks => {
                Self { loss_sum: t.loss_sum, batches: t.batches, grad_norm: t.grad_norm, ..Self::new(tasks) }
            }
            _ => Self::new(tasks),
        }
    }

    /// The losses read back so far (all of the window's, after [`Window::settle`]).
    pub fn totals(&self) -> WindowTotals {
        WindowTotals { loss_sum: self.loss_sum.clone(), batches: self.batches.clone(), grad_norm: self.grad_norm }
    }

    /// Keeps a batch's loss of task `task` at optimizer step `step` (counted from 1).
    pub fn add_loss(&mut self, step: usize, task: usize, loss: Tensor) {
        self.pending.push(PendingLoss { step, task, loss: loss.detach() });
    }

    /// Keeps the gradient norm (before clipping) of step `step`, whose batches were of `tasks`.
    pub fn add_grad_norm(&mut self, step: usize, tasks: Vec<usize>, norm: Tensor) {
        self.pending_norms.push(PendingNorm { step, tasks, norm: norm.detach() });
    }

    /// Reads the pending losses and gradient norms back at once and adds them to the window;
    /// the first value that is not finite comes back (by step, a step's losses before its
    /// norm), and the window keeps nothing of them. In a data-parallel launch (`across`: the
    /// group and the model's device) each rank's losses are of its share of the batches, and
    /// one all-reduce sums them first, so that every rank reads the whole batches' losses
    /// without waiting for the device at every step.
    pub fn settle(&mut self, across: Option<(&ProcessGroup, Device)>) -> Result<Option<NonFinite>> {
        if self.pending.is_empty() && self.pending_norms.is_empty() {
            return Ok(None);
        }
        let pending = std::mem::take(&mut self.pending);
        let norms = std::mem::take(&mut self.pending_norms);
        let losses = match across {
            Some((group, device)) if !pending.is_empty() => summed_across(&pending, group, device)?,
            _ => pending.iter().map(|p| p.loss.shallow_clone()).collect(),
        };
        let all: Vec<&Tensor> = losses.iter().chain(norms.iter().map(|n| &n.norm)).collect();
        let values = read_back(&all)?;
        let (losses, norm_values) = values.split_at(pending.len());
        let bad_loss = pending.iter().zip(losses).find(|(_, v)| !v.is_finite());
        let bad_norm = norms.iter().zip(norm_values).find(|(_, v)| !v.is_finite());
        match (bad_loss, bad_norm) {
            (Some((p, &value)), None) => return Ok(Some(NonFinite::Loss { step: p.step, task: p.task, value })),
            (Some((p, &value)), Some((n, _))) if p.step <= n.step => {
                return Ok(Some(NonFinite::Loss { step: p.step, task: p.task, value }))
            }
            (_, Some((n, &value))) => {
                return Ok(Some(NonFinite::GradNorm { step: n.step, tasks: n.tasks.clone(), value }))
            }
            (None, None) => {}
        }
        for (p, value) in pending.iter().zip(losses) {
            self.loss_sum[p.task] += value;
            self.batches[p.task] += 1;
        }
        if let Some(&last) = norm_values.last() {
            self.grad_norm = last;
        }
        Ok(None)
    }

    /// `(task, mean loss)` of every task trained in the window (after [`Window::settle`]).
    pub fn mean_losses(&self) -> Vec<(usize, f64)> {
        (0..self.loss_sum.len())
            .filter(|&t| self.batches[t] > 0)
            .map(|t| (t, self.loss_sum[t] / self.batches[t] as f64))
            .collect()
    }

    /// The gradient norm of the window's last step (after [`Window::settle`]; 0 before any).
    pub fn grad_norm(&self) -> f64 {
        self.grad_norm
    }
}

/// The ranks' losses summed, in order, as 0-dim tensors on `device` (the same device, so the
/// same backend, on every rank: a rank's empty share has a host loss of 0).
fn summed_across(pending: &[PendingLoss], group: &ProcessGroup, device: Device) -> Result<Vec<Tensor>> {
    let losses: Vec<Tensor> =
        pending.iter().map(|p| p.loss.to_device(device).to_kind(Kind::Double).reshape([1])).collect();
    let mut summed = Tensor::cat(&losses, 0);
    group.all_reduce_(&mut summed, Reduce::Sum, "the all-reduce of the window's losses")?;
    Ok(summed.unbind(0))
}

/// The values of 0-dim tensors, in order, with one transfer per device they are on (the
/// device's losses, and a data-parallel run's sums, which are on the host already).
fn read_back(tensors: &[&Tensor]) -> Result<Vec<f64>> {
    let mut values = vec![0.0; tensors.len()];
    let mut devices: Vec<Device> = Vec::new();
    for t in tensors {
        if !devices.contains(&t.device()) {
            devices.push(t.device());
        }
    }
    for device in devices {
        let (at, on_device): (Vec<usize>, Vec<Tensor>) = (tensors.iter().enumerate())
            .filter(|(_, t)| t.device() == device)
            .map(|(i, t)| (i, t.to_kind(Kind::Double).reshape([1])))
            .unzip();
        let read = Vec::<f64>::try_from(Tensor::cat(&on_device, 0).to_device(Device::Cpu))?;
        for (i, value) in at.into_iter().zip(read) {
            values[i] = value;
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_in_order_and_names_the_first_loss_that_is_not_finite() {
        let mut window = Window::new(2);
        window.add_loss(1, 0, Tensor::from(1.0f32));
        window.add_loss(1, 1, Tensor::from(3.0f32));
        window.add_loss(2, 0, Tensor::from(2.0f32));
        assert!(window.settle(None).unwrap().is_none());
        assert_eq!(window.mean_losses(), vec![(0, 1.5), (1, 3.0)]);
        window.add_loss(3, 1, Tensor::from(4.0f32));
        window.add_loss(4, 0, Tensor::from(f32::INFINITY));
        window.add_grad_norm(4, vec![0], Tensor::from(f32::NAN));
        window.add_loss(5, 1, Tensor::from(f32::NAN));
        window.add_grad_norm(5, vec![1], Tensor::from(f32::NAN));
        let Some(NonFinite::Loss { step, task, value }) = window.settle(None).unwrap() else {
            panic!("a bad loss is found")
        };
        assert_eq!((step, task, value), (4, 0, f64::INFINITY), "a bad loss is named before a bad norm");
        assert_eq!(window.mean_losses(), vec![(0, 1.5), (1, 3.0)], "a bad window adds nothing");
    }

    #[test]
    fn a_resumed_window_goes_on_from_its_saved_totals() {
        let mut window = Window::new(2);
        window.add_loss(1, 0, Tensor::from(1.0f32));
        window.add_grad_norm(1, vec![0], Tensor::from(2.0f32));
        window.examples += 4;
        assert!(window.settle(None).unwrap().is_none());
        let saved = serde_json::to_string(&window.totals()).unwrap();
        let mut resumed = Window::resumed(2, Some(serde_json::from_str(&saved).unwrap()));
        resumed.add_loss(2, 0, Tensor::from(3.0f32));
        assert!(resumed.settle(None).unwrap().is_none());
        assert_eq!((resumed.mean_losses(), resumed.grad_norm()), (vec![(0, 2.0)], 2.0));
        assert_eq!(resumed.examples, 0, "rates count the steps since the resumption");
        let other_tasks = Window::resumed(3, Some(window.totals()));
        assert_eq!(other_tasks.mean_losses(), vec![], "totals of another task count are dropped");
    }

    /// Saved totals come back exactly (serde_json's default parser misses about one f64 in
    /// ten by one ulp; the `float_roundtrip` feature reads them exactly).
    #[test]
    fn saved_totals_read_back_bit_for_bit() {
        let mut value = 0.1f64;
        let loss_sum: Vec<f64> = (0..1000)
            .map(|i| {
                value = (value * 3.7 + i as f64 * 0.013).fract() * 40.0;
                value
            })
            .collect();
        let totals = WindowTotals { batches: vec![1; loss_sum.len()], loss_sum, grad_norm: 1.0 / 3.0 };
        let back: WindowTotals = serde_json::from_str(&serde_json::to_string(&totals).unwrap()).unwrap();
        let bits = |t: &WindowTotals| t.loss_sum.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&totals));
        assert_eq!(back.grad_norm.to_bits(), totals.grad_norm.to_bits());
    }

    #[test]
    fn a_gradient_norm_that_is_not_finite_is_found_after_finite_losses() {
        let mut window = Window::new(2);
        window.add_loss(1, 0, Tensor::from(1.0f32));
        window.add_grad_norm(1, vec![0], Tensor::from(2.5f32));
        assert!(window.settle(None).unwrap().is_none());
        assert_eq!(window.grad_norm(), 2.5);
        window.add_loss(2, 1, Tensor::from(1.0f32));
        window.add_grad_norm(2, vec![1], Tensor::from(3.0f32));
        window.add_loss(3, 0, Tensor::from(1.0f32));
        window.add_loss(3, 1, Tensor::from(1.0f32));
        window.add_grad_norm(3, vec![0, 1], Tensor::from(f32::NAN));
        window.add_loss(4, 0, Tensor::from(f32::INFINITY));
        let Some(NonFinite::GradNorm { step, tasks, value }) = window.settle(None).unwrap() else {
            panic!("a bad gradient norm is found")
        };
        assert_eq!((step, tasks), (3, vec![0, 1]));
        assert!(value.is_nan());
        assert_eq!(window.grad_norm(), 2.5, "a bad window keeps the last good norm");
    }
}
