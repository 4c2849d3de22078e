//! AdamW with decoupled weight decay and one learning rate per group, computed by PyTorch's
//! fused AdamW kernel. Kept here rather than using tch's optimizer because tch cannot save
//! optimizer state (an interrupted run must resume exactly) and runs a slower per-op update.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use tch::Tensor;

use super::param_groups::ParamGroup;
use crate::torch_shim::{clip_grad_norm, fused_adamw, grad_set_to_none, AdamwHyper, AdamwTensors};

pub struct AdamW {
    groups: Vec<GroupState>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// Optimizer steps taken.
    step: u64,
}

struct GroupState {
    name: String,
    base_lr: f64,
    lr: f64,
    weight_decay: f64,
    params: Vec<(String, Tensor)>,
    /// First and second moment estimates, one per parameter, zeros until the first step.
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    /// Updates each parameter has had (PyTorch's per-parameter `state["step"]`): a task's
    /// head is only updated on its own batches, so with alternating tasks its count is about
    /// half the optimizer's, and Adam's bias correction must use its own count.
    /// Float scalars on the parameter's device, as the fused kernel reads them.
    updates: Vec<Tensor>,
}

impl AdamW {
    /// PyTorch's defaults: betas (0.9, 0.999), eps 1e-8.
    pub fn new(groups: Vec<ParamGroup>) -> Self {
        let groups = groups
            .into_iter()
            .map(|g| {
                let zeros = |params: &[(String, Tensor)]| params.iter().map(|(_, p)| p.zeros_like().detach()).collect();
                let updates = g.params.iter().map(|(_, p)| Tensor::from(0f32).to_device(p.device())).collect();
                GroupState {
                    updates,
                    exp_avg: zeros(&g.params),
                    exp_avg_sq: zeros(&g.params),
                    name: g.name,
                    base_lr: g.base_lr,
                    lr: g.base_lr,
                    weight_decay: g.weight_decay,
                    params: g.params,
                }
            })
            .collect();
        Self { groups, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 0 }
    }

    /// Sets every group's rate to its base rate times `factor` (the schedule's multiplier).
    pub fn set_lr_factor(&mut self, factor: f64) {
        for g in &mut self.groups {
            g.lr = g.base_lr * factor;
        }
    }

    /// (group name, current learning rate), in group order.
    pub fn learning_rates(&self) -> Vec<(String, f64)> {
        self.groups.iter().map(|g| (g.name.clone(), g.lr)).collect()
    }

    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Scales all gradients so their global L2 norm is at most `max_norm` (as
    /// `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping (0-dim, on the
    /// device, not read back).
    pub fn clip_grad_norm(&self, max_norm: f64) -> Result<Tensor> {
        let mut grads: Vec<Tensor> = self.grads().collect();
        clip_grad_norm(&mut grads, max_norm)
    }

    /// Every parameter the optimizer updates, in group order (the same on every rank).
    pub fn parameters(&self) -> impl Iterator<Item = &Tensor> + '_ {
        self.groups.iter().flat_map(|g| g.params.iter()).map(|(_, p)| p)
    }

    fn grads(&self) -> impl Iterator<Item = Tensor> + '_ {
        self.groups.iter().flat_map(|g| g.params.iter()).map(|(_, p)| p.grad()).filter(Tensor::defined)
    }

    /// One AdamW update of every parameter that has a gradient (PyTorch's fused kernel);
    /// parameters without one this step (e.g. the head of a task not in the batch) are
    /// left alone, as PyTorch does after `zero_grad(set_to_none=True)`.
    pub fn step(&mut self) -> Result<()> {
        self.step += 1;
        let (beta1, beta2, eps) = (self.beta1, self.beta2, self.eps);
        for g in &mut self.groups {
            let mut tensors = AdamwTensors {
                params: Vec::new(),
                grads: Vec::new(),
                exp_avgs: Vec::new(),
                exp_avg_sqs: Vec::new(),
                steps: Vec::new(),
            };
            let state = g.params.iter_mut().zip(&mut g.exp_avg).zip(&mut g.exp_avg_sq).zip(&mut g.updates);
            for ((((_, param), exp_avg), exp_avg_sq), updates) in state {
                let grad = param.grad();
                if !grad.defined() {
                    continue;
                }
                tensors.grads.push(grad);
                tensors.params.push(param);
                tensors.exp_avgs.push(exp_avg);
                tensors.exp_avg_sqs.push(exp_avg_sq);
                tensors.steps.push(updates);
            }
            let hyper = AdamwHyper { lr: g.lr, beta1, beta2, weight_decay: g.weight_decay, eps };
            fused_adamw(tensors, &hyper).with_context(|| format!("parameter group {}", g.name))?;
        }
        Ok(())
    }

    /// Drops all gradients (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&mut self) {
        for g in &mut self.groups {
            for (_, p) in &mut g.params {
                grad_set_to_none(p);
            }
        }
    }

    /// The optimizer state as named tensors (`exp_avg/<param>`, `exp_avg_sq/<param>`,
    /// `updates/<param>`, `step`).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_string(), Tensor::from_slice(&[self.step as i64]))];
        for g in &self.groups {
            for ((((name, _), m), v), n) in g.params.iter().zip(&g.exp_avg).zip(&g.exp_avg_sq).zip(&g.updates) {
                out.push((format!("exp_avg/{name}"), m.shallow_clone()));
                out.push((format!("exp_avg_sq/{name}"), v.shallow_clone()));
                out.push((format!("updates/{name}"), n.reshape([1])));
            }
        }
        out
    }

    /// Restores state saved by [`AdamW::state_tensors`]; every parameter must be covered.
    pub fn load_state(&mut self, tensors: BTreeMap<String, Tensor>) -> Result<()> {
        let step = tensors.get("step").map(|t| t.int64_value(&[0]));
        let Some(step) = step else { bail!("optimizer state has no step count") };
        tch::no_grad(|| -> Result<()> {
            for g in &mut self.groups {
                let state = g.params.iter().zip(&mut g.exp_avg).zip(&mut g.exp_avg_sq).zip(&mut g.updates);
                for ((((name, p), m), v), n) in state {
                    let mut n = n.reshape([1]);
                    for (kind, target, shape) in
                        [("exp_avg", m, p.size()), ("exp_avg_sq", v, p.size()), ("updates", &mut n, vec![1])]
                    {
                        let key = format!("{kind}/{name}");
                        match tensors.get(&key) {
                            Some(t) if t.size() == shape => target.copy_(t),
                            Some(_) => bail!("optimizer state {key} has the wrong shape"),
                            None => bail!("optimizer state lacks {key}"),
                        }
                    }
                }
            }
            Ok(())
        })?;
        self.step = step as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn group(name: &str, lr: f64, wd: f64, p: &Tensor) -> ParamGroup {
        ParamGroup { name: name.into(), base_lr: lr, weight_decay: wd, params: vec![(name.into(), p.shallow_clone())] }
    }

    /// Two AdamW steps by hand (PyTorch's formula) for one scalar parameter:
    /// p0 = 1, grads 0.5 then -0.25, lr 0.1, wd 0.01, betas (0.9, 0.999), eps 1e-8.
    #[test]
    fn matches_pytorch_formula_by_hand() {
        let p = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![group("w", 0.1, 0.01, &p)]);
        let mut expected = 1.0f64;
        let (mut m, mut v) = (0.0f64, 0.0f64);
        for (t, grad) in [(1, 0.5f64), (2, -0.25)] {
            opt.zero_grad();
            (&p * grad).sum(Kind::Double).backward();
            opt.step().unwrap();
            expected *= 1.0 - 0.1 * 0.01;
            m = 0.9 * m + 0.1 * grad;
            v = 0.999 * v + 0.001 * grad * grad;
            let denom = (v.sqrt() / (1.0 - 0.999f64.powi(t)).sqrt()) + 1e-8;
            expected -= 0.1 / (1.0 - 0.9f64.powi(t)) * m / denom;
            let got = p.double_value(&[0]);
            assert!((got - expected).abs() < 1e-12, "step {t}: {got} vs {expected}");
        }
    }

    #[test]
    fn per_group_rates_and_factor() {
        let a = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
        let b = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![group("a", 1e-3, 0.0, &a), group("b", 1e-1, 0.0, &b)]);
        opt.set_lr_factor(0.5);
        assert_eq!(opt.learning_rates(), vec![("a".into(), 5e-4), ("b".into(), 5e-2)]);
        (&a + &b).sum(Kind::Float).backward();
        opt.step().unwrap();
        // Adam's first step moves each parameter by about its learning rate.
        assert!((a.double_value(&[0]) + 5e-4).abs() < 1e-7);
        assert!((b.double_value(&[0]) + 5e-2).abs() < 1e-6);
    }

    #[test]
    fn a_parameter_without_gradient_this_step_is_not_updated() {
        let a = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let b = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![group("a", 0.1, 0.01, &a), group("b", 0.1, 0.01, &b)]);
        (&a + &b).sum(Kind::Float).backward();
        opt.step().unwrap();
        opt.zero_grad();
        let b_after_first = b.double_value(&[0]);
        // Only `a` is used in the second step (like the head of one task in its batch).
        (&a * 2.0).sum(Kind::Float).backward();
        assert!(!b.grad().defined(), "zero_grad drops gradients");
        opt.step().unwrap();
        assert_eq!(b.double_value(&[0]), b_after_first, "no momentum or decay without a gradient");
        assert_ne!(a.double_value(&[0]), 1.0);
    }

    /// PyTorch counts steps per parameter: a parameter first updated at the optimizer's
    /// second step gets a first-step update (bias correction with t = 1), so it moves by
    /// about lr, not lr * sqrt(1 - 0.999^2) / (1 - 0.9^2) = 0.235 lr.
    #[test]
    fn bias_correction_counts_each_parameters_own_updates() {
        let a = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
        let b = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![group("a", 0.1, 0.0, &a), group("b", 0.1, 0.0, &b)]);
        (&a * 1.0).sum(Kind::Float).backward();
        opt.step().unwrap();
        opt.zero_grad();
        (&b * 1.0).sum(Kind::Float).backward();
        opt.step().unwrap();
        assert!((b.double_value(&[0]) + 0.1).abs() < 1e-6, "b moved by {}", b.double_value(&[0]));
        let updates = |name: &str| {
            let key = format!("updates/{name}");
            opt.state_tensors().into_iter().find(|(n, _)| *n == key).unwrap().1.double_value(&[0])
        };
        assert_eq!((updates("a"), updates("b"), opt.steps_taken()), (1.0, 1.0, 2));
    }

    #[test]
    fn clipping_scales_to_max_norm_over_all_groups() {
        // Gradients (3, 0) and (0, 4) in two groups: global norm 5, scaled by 1/5 together.
        let p = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let q = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let opt = AdamW::new(vec![group("p", 0.1, 0.0, &p), group("q", 0.1, 0.0, &q)]);
        ((&p * Tensor::from_slice(&[3.0f32, 0.0])).sum(Kind::Float)
            + (&q * Tensor::from_slice(&[0.0f32, 4.0])).sum(Kind::Float))
        .backward();
        let norm = f64::try_from(opt.clip_grad_norm(1.0).unwrap()).unwrap();
        assert!((norm - 5.0).abs() < 1e-6, "{norm}");
        let (p_grad, q_grad) = (Vec::<f32>::try_from(p.grad()).unwrap(), Vec::<f32>::try_from(q.grad()).unwrap());
        assert!((p_grad[0] - 0.6).abs() < 1e-5 && p_grad[1] == 0.0, "{p_grad:?}");
        assert!(q_grad[0] == 0.0 && (q_grad[1] - 0.8).abs() < 1e-5, "{q_grad:?}");
        // Below the limit nothing changes; the norm is still reported.
        assert!((f64::try_from(opt.clip_grad_norm(10.0).unwrap()).unwrap() - 1.0).abs() < 1e-5);
        assert_eq!(Vec::<f32>::try_from(p.grad()).unwrap(), p_grad);
    }

    #[test]
    fn state_round_trips() {
        let p = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![group("p", 0.1, 0.0, &p)]);
        (&p * 2.0).sum(Kind::Float).backward();
        opt.step().unwrap();
        let saved: BTreeMap<String, Tensor> = opt.state_tensors().into_iter().map(|(n, t)| (n, t.copy())).collect();
        // The checkpoint's weights, and a new optimizer given the saved state.
        let q = p.detach().copy().set_requires_grad(true);
        let mut restored = AdamW::new(vec![group("p", 0.1, 0.0, &q)]);
        restored.load_state(saved).unwrap();
        assert_eq!(restored.steps_taken(), 1);
        let m = restored.state_tensors().into_iter().find(|(n, _)| n == "exp_avg/p").unwrap().1;
        assert_eq!(Vec::<f32>::try_from(m).unwrap(), vec![0.2, 0.2]);
        let state = |o: &AdamW| -> BTreeMap<String, Vec<f64>> {
            let values = |t: Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
            o.state_tensors().into_iter().map(|(n, t)| (n, values(t))).collect()
        };
        assert_eq!(state(&restored), state(&opt), "every moment and count");
        // The next step is the same from either.
        for (x, o) in [(&p, &mut opt), (&q, &mut restored)] {
            o.zero_grad();
            (x * x).sum(Kind::Float).backward();
            o.step().unwrap();
        }
        assert_eq!(Vec::<f32>::try_from(&p).unwrap(), Vec::<f32>::try_from(&q).unwrap());
    }
}
