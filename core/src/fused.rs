//! Fused operations on the CPU (flex) backend, as a burn backend extension with hand-written
//! backward passes:
//! - instance normalisation + affine + leaky ReLU in two passes forward and two backward
//!   (`nnunet_kernels::norm`), keeping only the input and two numbers per plane for the gradient;
//! - nnU-Net's soft Dice + cross-entropy loss on label targets in one pass forward and one
//!   backward (`nnunet_kernels::loss`), keeping the logits, the labels and the loss's sums.
//!
//! Other backends (wgpu, cuda) use the generic composition of burn operations.

use burn::backend::AutodiffBackend;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, backend_extension};
use burn::tensor::{Shape, Tensor, TensorData};
pub use nnunet_kernels::loss::DiceCe;
use nnunet_kernels::loss::{self, DiceCeSums};
use nnunet_kernels::norm::{self, NormStats};

/// Labels of a fused loss, `[n, s]` flat, shared with its backward step.
pub type Labels = std::sync::Arc<[i32]>;

/// The fused operations of nnunet-rs.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// `act(γ · (x − mean) / sqrt(var + eps) + β)` per (sample, channel) plane of `[n, c, …]`,
    /// `act(z) = z` for `z > 0`, `slope · z` otherwise.
    fn instance_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        slope: f32,
    ) -> FloatTensor<Self>;

    /// nnU-Net's soft Dice + cross-entropy of `[n, classes, …]` logits against `labels`
    /// (`[n, …]` flat, each a class or the ignore label), shape `[1]`.
    fn dice_ce_loss(
        logits: FloatTensor<Self>,
        labels: Labels,
        settings: DiceCe,
    ) -> FloatTensor<Self>;

    /// `Σ x²` over all elements (summed in f64), shape `[1]`, without a temporary; not tracked
    /// by autodiff.
    fn sum_of_squares(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

fn values(t: &FlexTensor) -> Vec<f32> {
    t.to_contiguous().storage::<f32>().to_vec()
}

fn planes(t: &FlexTensor) -> (usize, usize) {
    let dims = t.layout().shape();
    (dims[0], dims[1])
}

fn flex(v: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape))
}

fn forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f64,
    slope: f32,
) -> (FlexTensor, NormStats) {
    let (n, c) = planes(x);
    let xc = x.to_contiguous();
    let (y, stats) = norm::forward(
        xc.storage::<f32>(),
        n,
        c,
        &values(gamma),
        &values(beta),
        eps,
        slope,
    );
    (flex(y, x.layout().shape().clone()), stats)
}

impl FusedOps for Flex {
    fn instance_norm_act(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        eps: f64,
        slope: f32,
    ) -> FlexTensor {
        forward(&x, &gamma, &beta, eps, slope).0
    }

    fn dice_ce_loss(logits: FlexTensor, labels: Labels, settings: DiceCe) -> FlexTensor {
        loss_forward(&logits, &labels, &settings).0
    }

    fn sum_of_squares(x: FlexTensor) -> FlexTensor {
        let sum = nnunet_kernels::norm::sum_of_squares(x.to_contiguous().storage::<f32>());
        flex(vec![sum as f32], Shape::new([1]))
    }
}

fn loss_forward(logits: &FlexTensor, labels: &[i32], o: &DiceCe) -> (FlexTensor, DiceCeSums) {
    let n = planes(logits).0;
    let z = logits.to_contiguous();
    let (value, sums) = loss::forward(z.storage::<f32>(), labels, n, o);
    (flex(vec![value as f32], Shape::new([1])), sums)
}

/// The backward step of the loss: from the logits, the labels and the forward sums.
#[derive(Debug)]
struct DiceCeBackward;

impl Backward<Flex, 1> for DiceCeBackward {
    type State = (FlexTensor, Labels, DiceCe, DiceCeSums);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = values(&grads.consume::<Flex>(&ops.node))[0];
        let (logits, labels, o, sums) = ops.state;
        if let Some(node) = node {
            let n = planes(&logits).0;
            let z = logits.to_contiguous();
            let dz = loss::backward(z.storage::<f32>(), &labels, n, &o, &sums, grad);
            grads.register::<Flex>(node.id, flex(dz, logits.layout().shape().clone()));
        }
    }
}

/// The backward step: from `x`, γ, β and the plane statistics.
#[derive(Debug)]
struct InstanceNormActBackward;

impl Backward<Flex, 3> for InstanceNormActBackward {
    type State = (FlexTensor, FlexTensor, FlexTensor, NormStats, f32);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (x, gamma, beta, stats, slope) = ops.state;
        let (n, c) = planes(&x);
        let xc = x.to_contiguous();
        let g = norm::backward(
            xc.storage::<f32>(),
            dy.storage::<f32>(),
            n,
            c,
            &values(&gamma),
            &values(&beta),
            &stats,
            slope,
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex(g.dx, x.layout().shape().clone()));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex(g.dgamma, gamma.layout().shape().clone()));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex(g.dbeta, beta.layout().shape().clone()));
        }
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn instance_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        slope: f32,
    ) -> FloatTensor<Self> {
        let (y, stats) = forward(
            x.primitive(),
            gamma.primitive(),
            beta.primitive(),
            eps,
            slope,
        );
        let prep = InstanceNormActBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        match prep {
            OpsKind::Tracked(prep) => {
                let state = (
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    stats,
                    slope,
                );
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn dice_ce_loss(
        logits: FloatTensor<Self>,
        labels: Labels,
        settings: DiceCe,
    ) -> FloatTensor<Self> {
        let (y, sums) = loss_forward(logits.primitive(), &labels, &settings);
        match DiceCeBackward
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish((logits.into_primitive(), labels, settings, sums), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn sum_of_squares(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let sum = <Flex as FusedOps>::sum_of_squares(x.into_primitive());
        <Self as AutodiffBackend>::from_inner(sum)
    }
}

/// Whether `x` takes the fused CPU path (an f32 tensor on the flex backend); elsewhere the caller
/// composes burn operations.
pub fn supported<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && crate::device::is_cpu(&x.device())
}

/// Instance norm + affine + leaky ReLU of `[b, c, …]` (`slope` 1: no activation, 0: ReLU), for
/// tensors that [`supported`] accepts.
pub fn instance_norm_act<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
    slope: f32,
) -> Tensor<D> {
    debug_assert!(supported(&x), "instance_norm_act on an unsupported tensor");
    let y = <Dispatch as FusedOps>::instance_norm_act(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps,
        slope,
    );
    Tensor::from_dispatch(y)
}

/// nnU-Net's soft Dice + cross-entropy loss of `[n, classes, …]` logits that [`supported`]
/// accepts against `labels` (`[n, …]` flat, checked: each a class or the ignore label).
pub fn dice_ce_loss<const D: usize>(
    logits: Tensor<D>,
    labels: Labels,
    settings: DiceCe,
) -> Tensor<1> {
    debug_assert!(supported(&logits), "dice_ce_loss on an unsupported tensor");
    let y = <Dispatch as FusedOps>::dice_ce_loss(logits.into_dispatch(), labels, settings);
    Tensor::from_dispatch(y)
}

/// `Σ x²` of a tensor that [`supported`] accepts, summed in f64 without a temporary.
pub fn sum_of_squares<const D: usize>(x: Tensor<D>) -> f64 {
    debug_assert!(supported(&x), "sum_of_squares on an unsupported tensor");
    let y = <Dispatch as FusedOps>::sum_of_squares(x.into_dispatch());
    f64::from(Tensor::<1>::from_dispatch(y).into_scalar::<f32>())
}
