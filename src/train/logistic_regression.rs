//! Multinomial logistic regression fitted to convergence, as scikit-learn's
//! `LogisticRegression(C=1)` fits SetFit's head: full batch, in f64 on the CPU, by L-BFGS
//! from zero. Minimises the mean cross-entropy plus `|W|² / (2 C n)` (scikit-learn's
//! `C Σ cross-entropy + |W|² / 2`, divided by `C n`; the bias is not penalised).
//!
//! Two classes are one binary problem in scikit-learn: a single weight row `d` penalised by
//! `|d|² / 2`. Our two rows `w0`, `w1` predict through `d = w1 - w0` alone, and at the
//! minimum `w0 = -w1`, where `|W|² = |d|² / 2`: the penalty is doubled for two classes so
//! that `d` is scikit-learn's.

use std::collections::VecDeque;

use tch::{Device, Kind, Tensor};

/// scikit-learn's default inverse regularisation strength.
pub const C: f64 = 1.0;
const MAX_ITERATIONS: usize = 1000;
/// Converged when no gradient entry exceeds this.
const GRADIENT_TOLERANCE: f64 = 1e-7;
/// Curvature pairs L-BFGS keeps.
const MEMORY: usize = 10;

/// A fitted linear head: `weight [classes, dim]`, `bias [classes]` (f32, CPU).
pub struct LinearHead {
    pub weight: Tensor,
    pub bias: Tensor,
}

/// The head over `inputs [n, dim]` that best predicts class ids `classes [n]` (each `< n_classes`).
pub fn fit(inputs: &Tensor, classes: &[i64], n_classes: i64) -> LinearHead {
    let problem = Problem::new(inputs, classes, n_classes);
    let theta = minimise(&problem, Tensor::zeros([problem.parameters()], (Kind::Double, Device::Cpu)));
    let (weight, bias) = problem.split(&theta);
    LinearHead { weight: weight.to_kind(Kind::Float), bias: bias.to_kind(Kind::Float) }
}

/// The objective over parameters `theta [classes x (dim + 1)]`: each class's weights, then
/// its bias, as the rows of `[classes, dim + 1]`.
struct Problem {
    /// The inputs with a column of ones `[n, dim + 1]` (f64).
    x: Tensor,
    /// One-hot targets `[n, classes]` (f64).
    y: Tensor,
    /// 1 for weights, 0 for the bias `[1, dim + 1]`: what the penalty covers.
    penalised: Tensor,
    n_classes: i64,
    /// `1 / (C n)`, twice that for two classes (module doc).
    penalty: f64,
}

impl Problem {
    fn new(inputs: &Tensor, classes: &[i64], n_classes: i64) -> Self {
        let x = inputs.to_device(Device::Cpu).to_kind(Kind::Double);
        let (n, dim) = (x.size()[0], x.size()[1]);
        let ones = Tensor::ones([n, 1], (Kind::Double, Device::Cpu));
        let targets = Tensor::from_slice(classes);
        let y = targets.one_hot(n_classes).to_kind(Kind::Double);
        let mut penalised = vec![1.0f64; dim as usize + 1];
        penalised[dim as usize] = 0.0;
        Self {
            x: Tensor::cat(&[x, ones], 1),
            y,
            penalised: Tensor::from_slice(&penalised).unsqueeze(0),
            n_classes,
            penalty: if n_classes == 2 { 2.0 } else { 1.0 } / (C * n as f64),
        }
    }

    fn parameters(&self) -> i64 {
        self.n_classes * self.x.size()[1]
    }

    /// `theta` as weight `[classes, dim]` and bias `[classes]`.
    fn split(&self, theta: &Tensor) -> (Tensor, Tensor) {
        let rows = theta.view([self.n_classes, -1]);
        let dim = rows.size()[1] - 1;
        (rows.narrow(1, 0, dim).contiguous(), rows.select(1, dim).contiguous())
    }

    /// The objective and its gradient `[parameters]` at `theta`.
    fn evaluate(&self, theta: &Tensor) -> (f64, Tensor) {
        let rows = theta.view([self.n_classes, -1]);
        let n = self.x.size()[0] as f64;
        let logits = self.x.matmul(&rows.tr());
        let log_p = logits.log_softmax(1, Kind::Double);
        let cross_entropy = -(&log_p * &self.y).sum(Kind::Double).double_value(&[]) / n;
        let weights = &rows * &self.penalised;
        let penalty = 0.5 * self.penalty * weights.square().sum(Kind::Double).double_value(&[]);
        let residual = log_p.exp() - &self.y;
        let gradient = residual.tr().matmul(&self.x) / n + weights * self.penalty;
        (cross_entropy + penalty, gradient.view([-1]))
    }
}

/// L-BFGS with a backtracking (Armijo) line search from `theta`.
fn minimise(problem: &Problem, mut theta: Tensor) -> Tensor {
    let (mut value, mut gradient) = problem.evaluate(&theta);
    let mut history: VecDeque<(Tensor, Tensor, f64)> = VecDeque::with_capacity(MEMORY);
    for _ in 0..MAX_ITERATIONS {
        if max_abs(&gradient) < GRADIENT_TOLERANCE {
            break;
        }
        let mut direction = -two_loop(&gradient, &history);
        let mut slope = dot(&gradient, &direction);
        if slope >= 0.0 {
            // Not a descent direction (curvature went stale): restart from the gradient.
            history.clear();
            direction = -&gradient;
            slope = dot(&gradient, &direction);
        }
        let mut step = if history.is_empty() { 1.0 / max_abs(&gradient).max(1.0) } else { 1.0 };
        let (next, next_value, next_gradient) = loop {
            let candidate = &theta + &direction * step;
            let (candidate_value, candidate_gradient) = problem.evaluate(&candidate);
            if candidate_value <= value + 1e-4 * step * slope || step < 1e-12 {
                break (candidate, candidate_value, candidate_gradient);
            }
            step *= 0.5;
        };
        if next_value >= value && step < 1e-12 {
            break;
        }
        let (s, y) = (&next - &theta, &next_gradient - &gradient);
        let curvature = dot(&s, &y);
        if curvature > 1e-12 {
            if history.len() == MEMORY {
                history.pop_front();
            }
            history.push_back((s, y, 1.0 / curvature));
        }
        (theta, value, gradient) = (next, next_value, next_gradient);
    }
    theta
}

/// The inverse-Hessian estimate of the curvature pairs `(s, y, 1 / sᵀy)` applied to `gradient`.
fn two_loop(gradient: &Tensor, history: &VecDeque<(Tensor, Tensor, f64)>) -> Tensor {
    // A copy: the updates below are in place.
    let mut q = gradient.copy();
    let mut alphas = Vec::with_capacity(history.len());
    for (s, y, rho) in history.iter().rev() {
        let alpha = rho * dot(s, &q);
        q -= y * alpha;
        alphas.push(alpha);
    }
    if let Some((s, y, _)) = history.back() {
        q *= dot(s, y) / dot(y, y);
    }
    for ((s, y, rho), alpha) in history.iter().zip(alphas.into_iter().rev()) {
        let beta = rho * dot(y, &q);
        q += s * (alpha - beta);
    }
    q
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.dot(b).double_value(&[])
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` points in `dim` dimensions around one centre per class, overlapping.
    fn clusters(n: i64, dim: i64, n_classes: i64) -> (Tensor, Vec<i64>) {
        tch::manual_seed(7);
        let classes: Vec<i64> = (0..n).map(|i| i % n_classes).collect();
        let centres = Tensor::randn([n_classes, dim], (Kind::Float, Device::Cpu));
        let x = centres.index_select(0, &Tensor::from_slice(&classes))
            + Tensor::randn([n, dim], (Kind::Float, Device::Cpu));
        (x, classes)
    }

    /// scikit-learn's objective written out with autograd, independent of `Problem::evaluate`:
    /// for two classes its binary one, over the difference of the rows.
    fn objective(x: &Tensor, classes: &[i64], weight: &Tensor, bias: &Tensor) -> Tensor {
        let n = x.size()[0] as f64;
        if weight.size()[0] == 2 {
            let (d, b) = (weight.get(1) - weight.get(0), bias.get(1) - bias.get(0));
            let y = Tensor::from_slice(classes).to_kind(Kind::Double);
            let logit = x.matmul(&d) + b;
            return logit.binary_cross_entropy_with_logits::<Tensor>(&y, None, None, tch::Reduction::Mean)
                + d.square().sum(Kind::Double) / (2.0 * C * n);
        }
        let logits = x.matmul(&weight.tr()) + bias;
        logits.cross_entropy_for_logits(&Tensor::from_slice(classes))
            + weight.square().sum(Kind::Double) / (2.0 * C * n)
    }

    /// At the fit the objective's gradient (by autograd) vanishes: it is the minimum of a convex
    /// function, not just a good head.
    #[test]
    fn the_fit_is_the_minimum_of_the_penalised_cross_entropy() {
        for (n, dim, n_classes) in [(16, 8, 2), (48, 32, 6)] {
            let (x, classes) = clusters(n, dim, n_classes);
            let head = fit(&x, &classes, n_classes);
            assert_eq!(head.weight.size(), [n_classes, dim]);
            assert_eq!(head.bias.size(), [n_classes]);
            let weight = head.weight.to_kind(Kind::Double).set_requires_grad(true);
            let bias = head.bias.to_kind(Kind::Double).set_requires_grad(true);
            let loss = objective(&x.to_kind(Kind::Double), &classes, &weight, &bias);
            loss.backward();
            let worst = max_abs(&weight.grad()).max(max_abs(&bias.grad()));
            assert!(worst < 1e-5, "{n}x{dim}, {n_classes} classes: gradient entry {worst} at the fit");
            let start =
                objective(&x.to_kind(Kind::Double), &classes, &Tensor::zeros_like(&weight), &Tensor::zeros_like(&bias));
            assert!(loss.double_value(&[]) < start.double_value(&[]) - 0.1);
        }
    }

    /// Well-separated classes are all predicted right, and the bias follows class frequency
    /// when the inputs say nothing.
    #[test]
    fn separable_classes_are_learned_and_the_bias_is_unpenalised() {
        let x = Tensor::from_slice(&[3.0f32, 0.0, 2.5, 0.5, 0.0, 3.0, 0.5, 2.5]).view([4, 2]);
        let head = fit(&x, &[0, 0, 1, 1], 2);
        let predicted = (x.matmul(&head.weight.tr()) + &head.bias).argmax(1, false);
        assert_eq!(Vec::<i64>::try_from(predicted).unwrap(), [0, 0, 1, 1]);
        // Constant inputs: only the bias can fit, to the log-odds of 3 to 1.
        let head = fit(&Tensor::ones([4, 1], (Kind::Float, Device::Cpu)), &[0, 0, 0, 1], 2);
        let p = (head.weight.view([1, 2]) + &head.bias).softmax(1, Kind::Float);
        let p0 = p.double_value(&[0, 0]);
        assert!((p0 - 0.75).abs() < 0.02, "P(class 0) = {p0}, not near 3/4");
    }
}
