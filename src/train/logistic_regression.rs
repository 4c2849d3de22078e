//! Multinomial logistic regression fitted to convergence, as scikit-learn's
//! `LogisticRegression(C=1)` fits SetFit's head: full batch, in f64 on the CPU, by L-BFGS
//! from zero. Minimises the mean (row-weighted) cross-entropy plus `|W|² / (2 C n)`
//! (scikit-learn's `C Σ w_i cross-entropy_i + |W|² / 2`, divided by `C n`; the bias is not
//! penalised).
//!
//! L-BFGS runs on centred inputs, scaled down to unit mean square norm where it is larger:
//! the same minimum (the unpenalised bias absorbs the centre, and the penalty is scaled with
//! the inputs), but embeddings with a large common part, as unnormalised ones have, would
//! otherwise leave the problem so badly conditioned that [`MAX_ITERATIONS`] passes before it
//! converges.
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
    /// Whether L-BFGS reached the tolerance within [`MAX_ITERATIONS`] (scikit-learn warns
    /// with a `ConvergenceWarning` where it did not).
    pub converged: bool,
}

/// The head over `inputs [n, dim]` that best predicts class ids `classes [n]` (each
/// `< n_classes`), each row's cross-entropy weighted by `class_weights [classes]` of its
/// class where given (scikit-learn's `class_weight`).
pub fn fit(inputs: &Tensor, classes: &[i64], n_classes: i64, class_weights: Option<&Tensor>) -> LinearHead {
    let problem = Problem::new(inputs, classes, n_classes, class_weights);
    let start = Tensor::zeros([problem.parameters()], (Kind::Double, Device::Cpu));
    let (theta, converged) = minimise(&problem, start);
    let (weight, bias) = problem.unscaled(&theta);
    LinearHead { weight: weight.to_kind(Kind::Float), bias: bias.to_kind(Kind::Float), converged }
}

/// The objective over parameters `theta [classes x (dim + 1)]`: each class's weights, then
/// its bias, as the rows of `[classes, dim + 1]`.
struct Problem {
    /// The inputs, centred and scaled, with a column of ones `[n, dim + 1]` (f64).
    x: Tensor,
    /// One-hot targets, each row times its weight `[n, classes]` (f64).
    y: Tensor,
    /// Each row's weight `[n, 1]` (f64).
    row_weights: Tensor,
    /// 1 for weights, 0 for the bias `[1, dim + 1]`: what the penalty covers.
    penalised: Tensor,
    n_classes: i64,
    /// `1 / (C n)`, twice that for two classes (module doc), over the scale squared.
    penalty: f64,
    /// The inputs' mean `[dim]` and the scale their centred rows were divided by.
    centre: Tensor,
    scale: f64,
}

impl Problem {
    fn new(inputs: &Tensor, classes: &[i64], n_classes: i64, class_weights: Option<&Tensor>) -> Self {
        let options = (Kind::Double, Device::Cpu);
        let x = inputs.to_device(Device::Cpu).to_kind(Kind::Double);
        let (n, dim) = (x.size()[0], x.size()[1]);
        let centre = x.mean_dim(0, false, Kind::Double);
        let centred = &x - &centre;
        let mean_square = centred.square().sum(Kind::Double).double_value(&[]) / n as f64;
        // Scaled down only: inputs nearly alike (a collapsed encoder's) scaled up would make
        // the penalty, over the scale squared, swamp the fit.
        let scale = mean_square.sqrt().max(1.0);
        let targets = Tensor::from_slice(classes);
        let row_weights = match class_weights {
            Some(weights) => weights.to_device(Device::Cpu).to_kind(Kind::Double).index_select(0, &targets),
            None => Tensor::ones([n], options),
        }
        .unsqueeze(1);
        let y = targets.one_hot(n_classes).to_kind(Kind::Double) * &row_weights;
        let mut penalised = vec![1.0f64; dim as usize + 1];
        penalised[dim as usize] = 0.0;
        Self {
            x: Tensor::cat(&[centred / scale, Tensor::ones([n, 1], options)], 1),
            y,
            row_weights,
            penalised: Tensor::from_slice(&penalised).unsqueeze(0),
            n_classes,
            penalty: if n_classes == 2 { 2.0 } else { 1.0 } / (C * n as f64) / (scale * scale),
            centre,
            scale,
        }
    }

    fn parameters(&self) -> i64 {
        self.n_classes * self.x.size()[1]
    }

    /// `theta` (of the centred, scaled inputs) as the weight `[classes, dim]` and bias
    /// `[classes]` of the inputs as given: `W = W' / scale`, `b = b' - W centre`.
    fn unscaled(&self, theta: &Tensor) -> (Tensor, Tensor) {
        let rows = theta.view([self.n_classes, -1]);
        let dim = rows.size()[1] - 1;
        let weight = rows.narrow(1, 0, dim) / self.scale;
        let bias = rows.select(1, dim) - weight.matmul(&self.centre);
        (weight.contiguous(), bias.contiguous())
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
        // d/dlogits of Σ w_i CE_i: w_i (p_i - y_i), where `y` already carries w_i.
        let residual = log_p.exp() * &self.row_weights - &self.y;
        let gradient = residual.tr().matmul(&self.x) / n + weights * self.penalty;
        (cross_entropy + penalty, gradient.view([-1]))
    }
}

/// L-BFGS with a backtracking (Armijo) line search from `theta`; whether it converged.
fn minimise(problem: &Problem, mut theta: Tensor) -> (Tensor, bool) {
    let (mut value, mut gradient) = problem.evaluate(&theta);
    let mut history: VecDeque<(Tensor, Tensor, f64)> = VecDeque::with_capacity(MEMORY);
    for _ in 0..MAX_ITERATIONS {
        if max_abs(&gradient) < GRADIENT_TOLERANCE {
            return (theta, true);
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
            // No step lowers the objective (scikit-learn's "abnormal termination in line
            // search"): converged only where the gradient says so.
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
    let converged = max_abs(&gradient) < GRADIENT_TOLERANCE;
    (theta, converged)
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
    /// for two classes its binary one, over the difference of the rows; each row's loss
    /// weighted by its class's `class_weights` where given.
    fn objective(x: &Tensor, classes: &[i64], weight: &Tensor, bias: &Tensor, class_weights: Option<&[f64]>) -> Tensor {
        let n = x.size()[0] as f64;
        let rows: Vec<f64> = classes.iter().map(|&c| class_weights.map_or(1.0, |w| w[c as usize])).collect();
        let rows = Tensor::from_slice(&rows);
        if weight.size()[0] == 2 {
            let (d, b) = (weight.get(1) - weight.get(0), bias.get(1) - bias.get(0));
            let y = Tensor::from_slice(classes).to_kind(Kind::Double);
            let logit = x.matmul(&d) + b;
            let losses = logit.binary_cross_entropy_with_logits::<Tensor>(&y, None, None, tch::Reduction::None);
            return (losses * rows).sum(Kind::Double) / n + d.square().sum(Kind::Double) / (2.0 * C * n);
        }
        let log_p = (x.matmul(&weight.tr()) + bias).log_softmax(1, Kind::Double);
        let picked = log_p.gather(1, &Tensor::from_slice(classes).unsqueeze(1), false).squeeze_dim(1);
        -(picked * rows).sum(Kind::Double) / n + weight.square().sum(Kind::Double) / (2.0 * C * n)
    }

    /// The largest entry of the objective's gradient (by autograd) at `head`.
    fn worst_gradient(x: &Tensor, classes: &[i64], head: &LinearHead, class_weights: Option<&[f64]>) -> f64 {
        let weight = head.weight.to_kind(Kind::Double).set_requires_grad(true);
        let bias = head.bias.to_kind(Kind::Double).set_requires_grad(true);
        objective(&x.to_kind(Kind::Double), classes, &weight, &bias, class_weights).backward();
        max_abs(&weight.grad()).max(max_abs(&bias.grad()))
    }

    /// At the fit the objective's gradient (by autograd) vanishes: it is the minimum of a convex
    /// function, not just a good head.
    #[test]
    fn the_fit_is_the_minimum_of_the_penalised_cross_entropy() {
        for (n, dim, n_classes) in [(16, 8, 2), (48, 32, 6)] {
            let (x, classes) = clusters(n, dim, n_classes);
            let head = fit(&x, &classes, n_classes, None);
            assert!(head.converged);
            assert_eq!(head.weight.size(), [n_classes, dim]);
            assert_eq!(head.bias.size(), [n_classes]);
            let worst = worst_gradient(&x, &classes, &head, None);
            assert!(worst < 1e-5, "{n}x{dim}, {n_classes} classes: gradient entry {worst} at the fit");
            let (weight, bias) = (head.weight.to_kind(Kind::Double), head.bias.to_kind(Kind::Double));
            let x = x.to_kind(Kind::Double);
            let loss = objective(&x, &classes, &weight, &bias, None);
            let start = objective(&x, &classes, &weight.zeros_like(), &bias.zeros_like(), None);
            assert!(loss.double_value(&[]) < start.double_value(&[]) - 0.1);
        }
    }

    /// Class weights weigh each row's loss, as scikit-learn's `class_weight`: the fit is the
    /// minimum of the weighted objective, and a weighted class is predicted more often.
    #[test]
    fn class_weights_weigh_each_rows_loss() {
        for n_classes in [2, 4] {
            let (x, classes) = clusters(40, 8, n_classes);
            let heavy: Vec<f64> = (0..n_classes).map(|c| if c == 0 { 5.0 } else { 0.5 }).collect();
            let head = fit(&x, &classes, n_classes, Some(&Tensor::from_slice(&heavy)));
            let worst = worst_gradient(&x, &classes, &head, Some(&heavy));
            assert!(head.converged && worst < 1e-5, "{n_classes} classes: gradient entry {worst} at the fit");
            let unweighted = fit(&x, &classes, n_classes, None);
            let zeros = |h: &LinearHead| {
                i64::try_from((x.matmul(&h.weight.tr()) + &h.bias).argmax(1, false).eq(0).sum(Kind::Int64)).unwrap()
            };
            assert!(zeros(&head) > zeros(&unweighted), "{n_classes} classes: class 0 not predicted more often");
        }
    }

    /// Inputs with a large common part (unnormalised embeddings: norm about 15, most of it
    /// shared) still converge, to the minimum of the objective as given.
    #[test]
    fn badly_conditioned_inputs_converge() {
        let (x, classes) = clusters(300, 64, 30);
        let common = Tensor::randn([1, 64], (Kind::Float, Device::Cpu)) * 2.0;
        let x = x * 0.1 + common;
        let head = fit(&x, &classes, 30, None);
        let worst = worst_gradient(&x, &classes, &head, None);
        assert!(head.converged && worst < 1e-6, "gradient entry {worst} at the fit");
    }

    /// Well-separated classes are all predicted right, and the bias follows class frequency
    /// when the inputs say nothing.
    #[test]
    fn separable_classes_are_learned_and_the_bias_is_unpenalised() {
        let x = Tensor::from_slice(&[3.0f32, 0.0, 2.5, 0.5, 0.0, 3.0, 0.5, 2.5]).view([4, 2]);
        let head = fit(&x, &[0, 0, 1, 1], 2, None);
        let predicted = (x.matmul(&head.weight.tr()) + &head.bias).argmax(1, false);
        assert_eq!(Vec::<i64>::try_from(predicted).unwrap(), [0, 0, 1, 1]);
        // Inputs nearly alike (a collapsed encoder) still fit the bias to the class prior.
        let nearly = Tensor::from_slice(&[1.0f32, 1.0 + 1e-7, 1.0 - 1e-7, 1.0]).view([4, 1]);
        let head = fit(&nearly, &[0, 0, 0, 1], 2, None);
        let p0 = (nearly.matmul(&head.weight.tr()) + &head.bias).softmax(1, Kind::Float).double_value(&[0, 0]);
        assert!(head.converged && (p0 - 0.75).abs() < 0.02, "P(class 0) = {p0}");
        // Constant inputs: only the bias can fit, to the log-odds of 3 to 1.
        let head = fit(&Tensor::ones([4, 1], (Kind::Float, Device::Cpu)), &[0, 0, 0, 1], 2, None);
        let p = (head.weight.view([1, 2]) + &head.bias).softmax(1, Kind::Float);
        let p0 = p.double_value(&[0, 0]);
        assert!((p0 - 0.75).abs() < 0.02, "P(class 0) = {p0}, not near 3/4");
    }
}
