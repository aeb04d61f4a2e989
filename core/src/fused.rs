//! Fused operations on the CPU (flex) backend, as a burn backend extension with a hand-written
//! backward pass: instance normalisation + affine + leaky ReLU in two passes forward and two
//! backward (`nnunet_kernels::norm`), keeping only the input and two numbers per plane for the
//! gradient. Other backends (wgpu, cuda) use the generic composition of burn operations.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, backend_extension};
use burn::tensor::{Shape, Tensor, TensorData};
use nnunet_kernels::norm::{self, NormStats};

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
