//! Reading a plans configuration's `architecture.arch_kwargs` (the keyword arguments nnU-Net
//! passes to dynamic_network_architectures' `PlainConvUNet` / `ResidualEncoderUNet`).
//!
//! Classes are given as Python paths (`torch.nn.modules.conv.Conv3d`); only the last component
//! counts, so `torch.nn.Conv3d` works too. Scalars stand for "the same in every stage / on every
//! axis", as in the reference. Every problem is an [`Error::Invalid`] naming the field.

use nnunet_core::{Error, Result};
use serde_json::{Map, Value};

/// Which of the two U-Nets the kwargs describe (they differ in a few keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UNetFamily {
    /// `PlainConvUNet`: `n_conv_per_stage`, optional `nonlin_first`.
    Plain,
    /// `ResidualEncoderUNet`: `n_blocks_per_stage`, optional `block`, `bottleneck_channels`,
    /// `stem_channels`.
    ResidualEncoder,
}

impl UNetFamily {
    /// The reference's class name.
    fn class_name(self) -> &'static str {
        match self {
            UNetFamily::Plain => "PlainConvUNet",
            UNetFamily::ResidualEncoder => "ResidualEncoderUNet",
        }
    }

    /// The key of the encoder's convolutions or blocks per stage.
    fn per_stage_key(self) -> &'static str {
        match self {
            UNetFamily::Plain => "n_conv_per_stage",
            UNetFamily::ResidualEncoder => "n_blocks_per_stage",
        }
    }

    /// The keys only this family takes.
    fn family_keys(self) -> &'static [&'static str] {
        const PLAIN: &[&str] = &["n_conv_per_stage", "nonlin_first"];
        const RESIDUAL: &[&str] = &[
            "n_blocks_per_stage",
            "block",
            "bottleneck_channels",
            "stem_channels",
        ];
        match self {
            UNetFamily::Plain => PLAIN,
            UNetFamily::ResidualEncoder => RESIDUAL,
        }
    }

    /// Whether `key` is an argument of this family's class.
    fn is_known(self, key: &str) -> bool {
        const COMMON: &[&str] = &[
            "n_stages",
            "features_per_stage",
            "conv_op",
            "kernel_sizes",
            "strides",
            "n_conv_per_stage_decoder",
            "conv_bias",
            "norm_op",
            "norm_op_kwargs",
            "dropout_op",
            "dropout_op_kwargs",
            "nonlin",
            "nonlin_kwargs",
            "deep_supervision",
        ];
        COMMON.contains(&key) || self.family_keys().contains(&key)
    }
}

/// Normalisation layer kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// `InstanceNorm2d/3d`: per sample and channel over the spatial axes.
    Instance,
    /// `BatchNorm2d/3d`: per channel over batch and spatial axes, with running statistics.
    Batch,
}

/// A normalisation layer's settings (`norm_op` + `norm_op_kwargs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormSpec {
    /// Instance or batch normalisation.
    pub kind: NormKind,
    /// Added to the variance (`eps`, default 1e-5).
    pub eps: f64,
    /// Learnable per-channel `weight` and `bias` (`affine`; default false for instance norm, true
    /// for batch norm, as in torch).
    pub affine: bool,
    /// Running-statistics update rate of batch norm (`momentum`, default 0.1).
    pub momentum: f64,
}

/// The non-linearity (`nonlin` + `nonlin_kwargs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `LeakyReLU(negative_slope)`, default slope 0.01.
    LeakyRelu(f64),
    /// `ReLU`.
    Relu,
}

/// The validated topology of a U-Net, every per-stage value expanded to a list.
#[derive(Clone, Debug, PartialEq)]
pub struct UNetKwargs {
    /// Which U-Net the kwargs describe.
    pub family: UNetFamily,
    /// 2 (`Conv2d`) or 3 (`Conv3d`).
    pub dims: usize,
    /// Number of encoder stages (resolutions), at least 2.
    pub n_stages: usize,
    /// Output channels per stage.
    pub features_per_stage: Vec<usize>,
    /// Per stage, one kernel size per spatial axis (`dims` entries).
    pub kernel_sizes: Vec<Vec<usize>>,
    /// Per stage, one stride per spatial axis (`dims` entries).
    pub strides: Vec<Vec<usize>>,
    /// Convolutions (plain) or residual blocks (ResEnc) per encoder stage.
    pub n_per_stage: Vec<usize>,
    /// Convolutions per decoder stage (`n_stages - 1` entries, lowest resolution first).
    pub n_conv_per_stage_decoder: Vec<usize>,
    /// Whether the convolutions have a bias.
    pub conv_bias: bool,
    /// The normalisation after each convolution, if any.
    pub norm: Option<NormSpec>,
    /// The non-linearity, if any.
    pub nonlin: Option<Activation>,
    /// conv -> nonlin -> norm instead of conv -> norm -> nonlin (plain U-Net only).
    pub nonlin_first: bool,
    /// Output channels of the ResEnc stem (default: `features_per_stage[0]`).
    pub stem_channels: Option<usize>,
}

/// An [`Error::Invalid`] with `msg`.
fn invalid(msg: String) -> Error {
    Error::training(msg)
}

/// The last component of a Python class path (`torch.nn.modules.conv.Conv3d` -> `Conv3d`).
fn class_leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// A positive integer (`field` names it in the error).
fn positive(value: &Value, field: &str) -> Result<usize> {
    match value.as_u64() {
        Some(v) if v >= 1 => Ok(v as usize),
        _ => Err(invalid(format!(
            "arch_kwargs field `{field}` must be a positive integer, got {value}"
        ))),
    }
}

/// A list of `n` entries read by `item` (`field[i]` naming entry `i`), or a single entry
/// repeated `n` times. `what` follows "must have {n} entries" in the length error.
fn list_or_repeat<T: Clone>(
    value: &Value,
    field: &str,
    n: usize,
    what: &str,
    item: impl Fn(&Value, &str) -> Result<T>,
) -> Result<Vec<T>> {
    match value {
        Value::Array(items) => {
            if items.len() != n {
                return Err(invalid(format!(
                    "arch_kwargs field `{field}` must have {n} entries{what}, got {}",
                    items.len()
                )));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| item(v, &format!("{field}[{i}]")))
                .collect()
        }
        v => Ok(vec![item(v, field)?; n]),
    }
}

/// An int (repeated `n` times) or a list of `n` positive ints.
fn per_stage(value: &Value, field: &str, n: usize) -> Result<Vec<usize>> {
    list_or_repeat(value, field, n, "", positive)
}

/// An int or a list (`n` stages) of ints or lists of `dims` ints.
fn per_stage_per_axis(
    value: &Value,
    field: &str,
    n: usize,
    dims: usize,
) -> Result<Vec<Vec<usize>>> {
    let per_axis = format!(" (one per spatial axis of a {dims}D network)");
    list_or_repeat(value, field, n, " (one per stage)", |v, name| {
        list_or_repeat(v, name, dims, &per_axis, positive)
    })
}

/// `true` or `false` (`field` names it in the error).
fn boolean(value: &Value, field: &str) -> Result<bool> {
    value.as_bool().ok_or_else(|| {
        invalid(format!(
            "arch_kwargs field `{field}` must be true or false, got {value}"
        ))
    })
}

/// A finite number (`field` names it in the error).
fn number(value: &Value, field: &str) -> Result<f64> {
    value.as_f64().filter(|v| v.is_finite()).ok_or_else(|| {
        invalid(format!(
            "arch_kwargs field `{field}` must be a number, got {value}"
        ))
    })
}

/// An optional kwargs dict: null or absent is empty.
fn kwargs_dict<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(v) => Err(invalid(format!(
            "arch_kwargs field `{field}` must be an object or null, got {v}"
        ))),
    }
}

/// An optional class path string: null or absent is `None`.
fn class_path<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(v) => Err(invalid(format!(
            "arch_kwargs field `{field}` must be a class path string or null, got {v}"
        ))),
    }
}

/// `norm_op` and `norm_op_kwargs`: the normalisation of a `dims`-D network, if any.
fn parse_norm(obj: &Map<String, Value>, dims: usize) -> Result<Option<NormSpec>> {
    let Some(path) = class_path(obj, "norm_op")? else {
        return Ok(None);
    };
    let leaf = class_leaf(path);
    let (kind, norm_dims) = match leaf {
        "InstanceNorm2d" => (NormKind::Instance, 2),
        "InstanceNorm3d" => (NormKind::Instance, 3),
        "BatchNorm2d" => (NormKind::Batch, 2),
        "BatchNorm3d" => (NormKind::Batch, 3),
        _ => {
            return Err(invalid(format!(
                "arch_kwargs field `norm_op`: `{path}` is not supported (InstanceNorm2d/3d, BatchNorm2d/3d or null)"
            )));
        }
    };
    if norm_dims != dims {
        return Err(invalid(format!(
            "arch_kwargs field `norm_op`: `{path}` is {norm_dims}D but `conv_op` is {dims}D"
        )));
    }
    let mut spec = NormSpec {
        kind,
        eps: 1e-5,
        affine: kind == NormKind::Batch,
        momentum: 0.1,
    };
    if let Some(kw) = kwargs_dict(obj, "norm_op_kwargs")? {
        for (key, value) in kw {
            let field = format!("norm_op_kwargs.{key}");
            match key.as_str() {
                "eps" => {
                    spec.eps = number(value, &field)?;
                    if spec.eps < 0.0 {
                        return Err(invalid(format!(
                            "arch_kwargs field `{field}` must not be negative, got {value}"
                        )));
                    }
                }
                "affine" => spec.affine = boolean(value, &field)?,
                "momentum" => {
                    spec.momentum = number(value, &field)?;
                    if !(0.0..=1.0).contains(&spec.momentum) {
                        return Err(invalid(format!(
                            "arch_kwargs field `{field}` must be within [0, 1], got {value}"
                        )));
                    }
                }
                "track_running_stats" => {
                    let track = boolean(value, &field)?;
                    if track != (kind == NormKind::Batch) {
                        return Err(invalid(format!(
                            "arch_kwargs field `{field}` = {track} is not supported for {leaf}"
                        )));
                    }
                }
                _ => {
                    return Err(invalid(format!(
                        "arch_kwargs field `{field}` is not a supported {leaf} argument (eps, affine, momentum)"
                    )));
                }
            }
        }
    }
    Ok(Some(spec))
}

/// `nonlin` and `nonlin_kwargs`: the non-linearity, if any.
fn parse_nonlin(obj: &Map<String, Value>) -> Result<Option<Activation>> {
    let Some(path) = class_path(obj, "nonlin")? else {
        return Ok(None);
    };
    let leaf = class_leaf(path);
    let mut activation = match leaf {
        "LeakyReLU" => Activation::LeakyRelu(0.01),
        "ReLU" => Activation::Relu,
        _ => {
            return Err(invalid(format!(
                "arch_kwargs field `nonlin`: `{path}` is not supported (LeakyReLU, ReLU or null)"
            )));
        }
    };
    if let Some(kw) = kwargs_dict(obj, "nonlin_kwargs")? {
        for (key, value) in kw {
            let field = format!("nonlin_kwargs.{key}");
            match (key.as_str(), &mut activation) {
                // In-place or not, the values are the same.
                ("inplace", _) => {
                    boolean(value, &field)?;
                }
                ("negative_slope", Activation::LeakyRelu(slope)) => *slope = number(value, &field)?,
                _ => {
                    return Err(invalid(format!(
                        "arch_kwargs field `{field}` is not a supported {leaf} argument"
                    )));
                }
            }
        }
    }
    Ok(Some(activation))
}

/// `field` of `obj`, which `class` requires (absent or null is an error).
fn required_field<'a>(obj: &'a Map<String, Value>, class: &str, field: &str) -> Result<&'a Value> {
    obj.get(field).filter(|v| !v.is_null()).ok_or_else(|| {
        invalid(format!(
            "{class} arch_kwargs: required field `{field}` is missing"
        ))
    })
}

/// `n_stages`: at least 2.
fn parse_n_stages(value: &Value) -> Result<usize> {
    let n_stages = positive(value, "n_stages")?;
    if n_stages < 2 {
        return Err(invalid(format!(
            "arch_kwargs field `n_stages` must be at least 2 (a U-Net needs a decoder), got {n_stages}"
        )));
    }
    Ok(n_stages)
}

/// `conv_op`: the number of spatial dimensions of `Conv2d` or `Conv3d`.
fn parse_conv_dims(conv_path: &Value) -> Result<usize> {
    let conv_path = conv_path.as_str().ok_or_else(|| {
        invalid(format!(
            "arch_kwargs field `conv_op` must be a class path string, got {conv_path}"
        ))
    })?;
    match class_leaf(conv_path) {
        "Conv2d" => Ok(2),
        "Conv3d" => Ok(3),
        _ => Err(invalid(format!(
            "arch_kwargs field `conv_op`: `{conv_path}` is not supported (Conv2d or Conv3d)"
        ))),
    }
}

/// `dropout_op` (only null) and `deep_supervision` (any boolean: the spec decides).
fn check_dropout_and_deep_supervision(obj: &Map<String, Value>) -> Result<()> {
    if let Some(path) = class_path(obj, "dropout_op")? {
        return Err(invalid(format!(
            "arch_kwargs field `dropout_op`: `{path}` is not supported (only null, as in nnU-Net's plans)"
        )));
    }
    if let Some(v) = obj.get("deep_supervision").filter(|v| !v.is_null()) {
        // The spec decides; the value only has to be well-formed.
        boolean(v, "deep_supervision")?;
    }
    Ok(())
}

/// The ResEnc keys: `block` (only `BasicBlockD`), `bottleneck_channels` (only null) and the
/// optional `stem_channels`; `None` for the plain U-Net.
fn parse_residual_keys(obj: &Map<String, Value>, family: UNetFamily) -> Result<Option<usize>> {
    if family != UNetFamily::ResidualEncoder {
        return Ok(None);
    }
    if let Some(path) = class_path(obj, "block")?
        && class_leaf(path) != "BasicBlockD"
    {
        return Err(invalid(format!(
            "arch_kwargs field `block`: `{path}` is not supported (BasicBlockD)"
        )));
    }
    if let Some(v) = obj.get("bottleneck_channels").filter(|v| !v.is_null()) {
        return Err(invalid(format!(
            "arch_kwargs field `bottleneck_channels` is only used by BottleneckD blocks, which are not supported; got {v}"
        )));
    }
    match obj.get("stem_channels").filter(|v| !v.is_null()) {
        Some(v) => Ok(Some(positive(v, "stem_channels")?)),
        None => Ok(None),
    }
}

impl UNetKwargs {
    /// Reads and validates `arch_kwargs` for `family`.
    pub fn parse(arch_kwargs: &Value, family: UNetFamily) -> Result<Self> {
        let class = family.class_name();
        let obj = arch_kwargs.as_object().ok_or_else(|| {
            invalid(format!(
                "{class} arch_kwargs must be a JSON object, got {arch_kwargs}"
            ))
        })?;
        if let Some(key) = obj.keys().find(|k| !family.is_known(k)) {
            return Err(invalid(format!(
                "arch_kwargs field `{key}` is not an argument of {class}"
            )));
        }
        let required = |key: &str| required_field(obj, class, key);

        let n_stages = parse_n_stages(required("n_stages")?)?;
        let dims = parse_conv_dims(required("conv_op")?)?;
        let features_per_stage = per_stage(
            required("features_per_stage")?,
            "features_per_stage",
            n_stages,
        )?;
        let kernel_sizes =
            per_stage_per_axis(required("kernel_sizes")?, "kernel_sizes", n_stages, dims)?;
        let strides = per_stage_per_axis(required("strides")?, "strides", n_stages, dims)?;
        let stage_key = family.per_stage_key();
        let n_per_stage = per_stage(required(stage_key)?, stage_key, n_stages)?;
        let n_conv_per_stage_decoder = per_stage(
            required("n_conv_per_stage_decoder")?,
            "n_conv_per_stage_decoder",
            n_stages - 1,
        )?;
        let conv_bias = match obj.get("conv_bias") {
            None => false,
            Some(v) => boolean(v, "conv_bias")?,
        };
        let norm = parse_norm(obj, dims)?;
        let nonlin = parse_nonlin(obj)?;
        check_dropout_and_deep_supervision(obj)?;
        let nonlin_first = match obj.get("nonlin_first") {
            None | Some(Value::Null) => false,
            Some(v) => boolean(v, "nonlin_first")?,
        };
        let stem_channels = parse_residual_keys(obj, family)?;
        Ok(UNetKwargs {
            family,
            dims,
            n_stages,
            features_per_stage,
            kernel_sizes,
            strides,
            n_per_stage,
            n_conv_per_stage_decoder,
            conv_bias,
            norm,
            nonlin,
            nonlin_first,
            stem_channels,
        })
    }

    /// The cumulative stride of the deepest stage, per spatial axis: input sizes must be
    /// multiples of it.
    pub fn total_strides(&self) -> Vec<usize> {
        (0..self.dims)
            .map(|axis| self.strides.iter().map(|s| s[axis]).product())
            .collect()
    }
}
