//! The logging window: what the steps since the last log line trained, and their losses,
//! which stay on the device until the window is read. Reading a loss back makes the host wait
//! for the GPU; here that happens once per window (and before every save), in one transfer,
//! and the first loss that is not finite is still found with its step and task.

use std::time::Instant;

use anyhow::Result;
use tch::{Device, Kind, Tensor};

/// A batch's loss (a 0-dim tensor, maybe on the GPU) not read yet.
struct PendingLoss {
    step: usize,
    task: usize,
    loss: Tensor,
}

/// The first loss of a window that was NaN or infinite.
pub struct NonFiniteLoss {
    pub step: usize,
    pub task: usize,
    pub value: f64,
}

pub struct Window {
    pending: Vec<PendingLoss>,
    loss_sum: Vec<f64>,
    batches: Vec<usize>,
    pub examples: usize,
    pub tokens: usize,
    grad_norm: Option<Tensor>,
    pub started: Instant,
}

impl Window {
    pub fn new(tasks: usize) -> Self {
        Self {
            pending: Vec::new(),
            loss_sum: vec![0.0; tasks],
            batches: vec![0; tasks],
            examples: 0,
            tokens: 0,
            grad_norm: None,
            started: Instant::now(),
        }
    }

    /// Keeps a batch's loss of task `task` at optimizer step `step` (counted from 1).
    pub fn add_loss(&mut self, step: usize, task: usize, loss: Tensor) {
        self.pending.push(PendingLoss { step, task, loss: loss.detach() });
    }

    /// The gradient norm of the window's last step (before clipping).
    pub fn set_grad_norm(&mut self, norm: Tensor) {
        self.grad_norm = Some(norm);
    }

    /// Reads the pending losses back at once and adds them to the window's sums; the first
    /// that is not finite comes back as the error, and the window keeps nothing of them.
    pub fn settle(&mut self) -> Result<(), NonFiniteLoss> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let losses: Vec<Tensor> = pending.iter().map(|p| p.loss.to_kind(Kind::Double).to_device(Device::Cpu)).collect();
        let values = Vec::<f64>::try_from(Tensor::stack(&losses, 0)).unwrap_or_else(|_| vec![f64::NAN; pending.len()]);
        if let Some((p, &value)) = pending.iter().zip(&values).find(|(_, v)| !v.is_finite()) {
            return Err(NonFiniteLoss { step: p.step, task: p.task, value });
        }
        for (p, value) in pending.iter().zip(values) {
            self.loss_sum[p.task] += value;
            self.batches[p.task] += 1;
        }
        Ok(())
    }

    /// `(task, mean loss)` of every task trained in the window (after [`Window::settle`]).
    pub fn mean_losses(&self) -> Vec<(usize, f64)> {
        (0..self.loss_sum.len())
            .filter(|&t| self.batches[t] > 0)
            .map(|t| (t, self.loss_sum[t] / self.batches[t] as f64))
            .collect()
    }

    pub fn grad_norm(&self) -> Result<f64> {
        Ok(match &self.grad_norm {
            Some(norm) => f64::try_from(norm.to_kind(Kind::Double))?,
            None => 0.0,
        })
    }
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
        assert!(window.settle().is_ok());
        assert_eq!(window.mean_losses(), vec![(0, 1.5), (1, 3.0)]);
        window.add_loss(3, 1, Tensor::from(4.0f32));
        window.add_loss(4, 0, Tensor::from(f32::INFINITY));
        window.add_loss(5, 1, Tensor::from(f32::NAN));
        let bad = window.settle().err().unwrap();
        assert_eq!((bad.step, bad.task, bad.value), (4, 0, f64::INFINITY));
        assert_eq!(window.mean_losses(), vec![(0, 1.5), (1, 3.0)], "a bad window adds nothing");
    }
}
