//! ResEnc's residual blocks (`BasicBlockD`) and stacks of them.

// burn, as nnunet-core re-exports it (the plugins crate has no direct burn dependency).
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use nnunet_core::burn;

use super::super::kwargs::Activation;
use super::{ConvNormAct, LayerSettings, StackShape, activate, as_zyx};

/// Average pooling with kernel = stride (floor), `factors` per axis `[z, y, x]`.
pub(crate) fn avg_pool(x: Tensor<5>, factors: [usize; 3]) -> Tensor<5> {
    let mut x = x;
    for (axis, &f) in factors.iter().enumerate() {
        if f == 1 {
            continue;
        }
        let dims = x.dims();
        let keep = dims[2 + axis] / f;
        if keep * f != dims[2 + axis] {
            x = x.narrow(2 + axis, 0, keep * f);
        }
        let before: usize = dims[..2 + axis].iter().product();
        let after: usize = dims[3 + axis..].iter().product();
        let grouped: Tensor<4> = x.reshape([before, keep, f, after]);
        let pooled = grouped.mean_dim(2);
        let mut out = dims;
        out[2 + axis] = keep;
        x = pooled.reshape(out);
    }
    x
}

/// `BasicBlockD`: two units and a residual path (average pooling when strided, then a 1x1 unit
/// without bias when the channels change), then the non-linearity.
///
/// `skip` mirrors torch's `nn.Sequential`: index 0 is the pooling (no parameters, `None`) when
/// the block is strided, so the projection is `skip.1` after pooling and `skip.0` without.
#[derive(Module, Debug)]
pub struct BasicBlockD {
    /// The first unit (strided, with non-linearity).
    pub conv1: ConvNormAct,
    /// The second unit (no non-linearity; its norm starts at zero).
    pub conv2: ConvNormAct,
    /// The residual path: pooling placeholder and/or 1x1 projection.
    pub skip: Vec<Option<ConvNormAct>>,
    #[module(skip)]
    pool: Option<[usize; 3]>,
    #[module(skip)]
    nonlin: Option<Activation>,
}

impl BasicBlockD {
    /// A block from `channels_in` to `channels_out` channels with `kernel` and `stride`.
    pub fn new(
        channels_in: usize,
        channels_out: usize,
        kernel: &[usize],
        stride: &[usize],
        settings: &LayerSettings,
        device: &Device,
    ) -> Self {
        let ones = vec![1; kernel.len()];
        let conv1 = ConvNormAct::new(
            channels_in,
            channels_out,
            kernel,
            stride,
            settings.conv_bias,
            settings,
            true,
            device,
        );
        let mut conv2 = ConvNormAct::new(
            channels_out,
            channels_out,
            kernel,
            &ones,
            settings.conv_bias,
            settings,
            false,
            device,
        );
        // init_last_bn_before_add_to_0
        if let Some(norm) = conv2.norm.as_mut() {
            norm.zero_affine();
        }
        let strided = stride.iter().any(|&s| s != 1);
        let mut skip = Vec::new();
        if strided {
            skip.push(None);
        }
        if channels_in != channels_out {
            skip.push(Some(ConvNormAct::new(
                channels_in,
                channels_out,
                &ones,
                &ones,
                false,
                settings,
                false,
                device,
            )));
        }
        BasicBlockD {
            conv1,
            conv2,
            skip,
            pool: strided.then(|| as_zyx(stride)),
            nonlin: settings.nonlin,
        }
    }

    /// Applies the block: `nonlin(conv2(conv1(x)) + skip(x))`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let mut residual = match self.pool {
            Some(f) => avg_pool(x.clone(), f),
            None => x.clone(),
        };
        if let Some(Some(projection)) = self.skip.last() {
            residual = projection.forward(residual);
        }
        let out = self.conv2.forward(self.conv1.forward(x));
        activate(self.nonlin, out.add(residual))
    }
}

/// `StackedResidualBlocks`: `n` blocks, the first one strided.
#[derive(Module, Debug)]
pub struct StackedResidualBlocks {
    /// The blocks, in order.
    pub blocks: Vec<BasicBlockD>,
}

impl StackedResidualBlocks {
    /// The blocks of `shape`.
    pub fn new(shape: StackShape, settings: &LayerSettings, device: &Device) -> Self {
        let blocks = shape.layers(|cin, stride| {
            BasicBlockD::new(
                cin,
                shape.channels_out,
                shape.kernel,
                stride,
                settings,
                device,
            )
        });
        StackedResidualBlocks { blocks }
    }

    /// Applies the blocks in order.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.blocks.iter().fold(x, |x, block| block.forward(x))
    }
}
