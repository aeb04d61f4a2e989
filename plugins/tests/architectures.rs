//! PlainConvUNet and ResidualEncoderUNet against the reference (dynamic_network_architectures
//! 0.4.4 as built by nnunetv2 2.8.1): parameter names and shapes for every planned configuration
//! of the planning fixtures, numeric forward parity of small networks, deep supervision, the 2D
//! layout, initialisation and errors. Fixtures: tests/fixtures/architectures/make_fixtures.py.

use std::collections::HashSet;

use nnunet_core::burn::module::ParamId;
use nnunet_core::burn::tensor::{Device, Tensor, TensorData};
use nnunet_core::network::{ErasedTensor, Network, NetworkSpec, ParameterUpdate};
use nnunet_plugins::architectures::{PlainConvUNet, ResidualEncoderUNet, is_state_dict_alias};
use serde_json::{Value, json};

#[path = "common/networks.rs"]
mod networks;
use networks::{
    as_5d, build_on, fixture, floats, max_abs_diff, reference_weights, shape_of, spec_of, tiny_on,
};

fn build(class: &str, spec: &NetworkSpec) -> nnunet_core::Result<Box<dyn Network>> {
    build_on(class, spec, &Device::flex())
}

fn tensor5(shape: [usize; 5], values: Vec<f32>) -> Tensor<5> {
    Tensor::from_data(TensorData::new(values, shape), &Device::flex())
}

fn values(t: Tensor<5>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Shards of the parameter-layout check (building the largest ResEnc networks takes seconds, so
/// the distinct topologies are spread over several tests, the largest first, each to the least
/// loaded shard).
const SHARDS: usize = 4;

/// The configurations (one per distinct topology) that shard `shard` checks.
fn shard_configs(fx: &Value, shard: usize) -> Vec<Value> {
    let configs = fx["configurations"].as_array().unwrap();
    let mut seen = HashSet::new();
    let mut unique: Vec<&Value> = configs
        .iter()
        .filter(|c| seen.insert(c["topology"].as_u64().unwrap()))
        .collect();
    unique.sort_by_key(|c| std::cmp::Reverse(c["trainable_parameters"].as_u64().unwrap()));
    let mut load = [0u64; SHARDS];
    let mut mine = Vec::new();
    for cfg in unique {
        let target = (0..SHARDS).min_by_key(|&s| (load[s], s)).unwrap();
        load[target] += cfg["trainable_parameters"].as_u64().unwrap();
        if target == shard {
            mine.push(cfg.clone());
        }
    }
    mine
}

/// The entries of a fixture's list, which must not be empty, each with its `name`.
fn named_entries(list: &Value) -> Vec<(&str, &Value)> {
    let entries = list.as_array().unwrap();
    assert!(!entries.is_empty());
    entries
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e))
        .collect()
}

#[test]
fn every_planned_configuration_is_covered() {
    let fx = fixture("parameter_shapes.json");
    let configs = fx["configurations"].as_array().unwrap();
    assert!(configs.len() >= 30, "{} configurations", configs.len());
    let mut topologies: Vec<u64> = (0..SHARDS)
        .flat_map(|s| shard_configs(&fx, s))
        .map(|c| c["topology"].as_u64().unwrap())
        .collect();
    topologies.sort_unstable();
    let expected: Vec<u64> = (0..fx["topologies"].as_array().unwrap().len() as u64).collect();
    assert_eq!(topologies, expected);
    // Both families and both dimensionalities are planned.
    for class in ["PlainConvUNet", "ResidualEncoderUNet"] {
        for is_2d in [true, false] {
            assert!(configs.iter().any(|c| {
                c["network_class_name"].as_str().unwrap().ends_with(class)
                    && c["is_2d"].as_bool().unwrap() == is_2d
            }));
        }
    }
}

/// Our parameter names and shapes equal the reference's `state_dict` (aliases removed), in
/// order, and so does the total number of parameters.
fn check_parameter_layout(shard: usize) {
    let fx = fixture("parameter_shapes.json");
    let topologies = fx["topologies"].as_array().unwrap();
    for cfg in shard_configs(&fx, shard) {
        let topology = cfg["topology"].as_u64().unwrap() as usize;
        let what = format!(
            "{} {}",
            cfg["plans"].as_str().unwrap(),
            cfg["configuration"].as_str().unwrap()
        );
        let class = cfg["network_class_name"].as_str().unwrap();
        let net = build(class, &spec_of(&cfg, true)).unwrap_or_else(|e| panic!("{what}: {e}"));
        let ours = net.parameter_shapes();
        let reference: Vec<(String, Vec<usize>)> = topologies[topology]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| (entry[0].as_str().unwrap().to_string(), shape_of(&entry[1])))
            .collect();
        assert_eq!(ours.len(), reference.len(), "{what}: parameter count");
        for (i, (o, r)) in ours.iter().zip(&reference).enumerate() {
            assert_eq!(o, r, "{what}: parameter {i}");
        }
        let total: usize = net.parameter_counts().iter().map(|(_, n)| n).sum();
        assert_eq!(
            total as u64,
            cfg["trainable_parameters"].as_u64().unwrap(),
            "{what}: total number of parameters"
        );
    }
}

#[test]
fn parameter_layout_matches_the_reference_shard_0() {
    check_parameter_layout(0);
}

#[test]
fn parameter_layout_matches_the_reference_shard_1() {
    check_parameter_layout(1);
}

#[test]
fn parameter_layout_matches_the_reference_shard_2() {
    check_parameter_layout(2);
}

#[test]
fn parameter_layout_matches_the_reference_shard_3() {
    check_parameter_layout(3);
}

/// Builds a tiny fixture network with the reference's weights.
fn tiny(name: &str) -> (Value, Box<dyn Network>) {
    tiny_on(name, &Device::flex())
}

fn input_of(fx: &Value) -> Tensor<5> {
    tensor5(
        as_5d(&shape_of(&fx["input"]["shape"])),
        floats(&fx["input"]["values"]),
    )
}

fn assert_forward_parity(name: &str) {
    let (fx, net) = tiny(name);
    let outputs = net.forward(input_of(&fx));
    let reference = fx["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), reference.len(), "{name}: number of outputs");
    for (i, (ours, theirs)) in outputs.into_iter().zip(reference).enumerate() {
        assert_eq!(
            ours.dims(),
            as_5d(&shape_of(&theirs["shape"])),
            "{name}: output {i} shape"
        );
        let diff = max_abs_diff(&values(ours), &floats(&theirs["values"]));
        assert!(diff < 1e-4, "{name}: output {i} differs by {diff}");
    }
}

#[test]
fn plain_2d_forward_matches_the_reference() {
    assert_forward_parity("plain_2d");
}

#[test]
fn plain_2d_batch_norm_forward_matches_the_reference_in_eval_mode() {
    assert_forward_parity("plain_2d_bn");
}

#[test]
fn plain_3d_forward_matches_the_reference() {
    assert_forward_parity("plain_3d");
}

#[test]
fn residual_encoder_3d_forward_matches_the_reference() {
    assert_forward_parity("resenc_3d");
}

#[test]
fn batch_norm_uses_batch_statistics_and_updates_running_statistics_when_training() {
    let (fx, mut net) = tiny("plain_2d_bn");
    let before = net.export_parameters();
    let copy = net.boxed_clone();
    let device = Device::flex().autodiff();
    net.to_device(&device);
    let input = Tensor::<5>::from_data(
        TensorData::new(
            floats(&fx["input"]["values"]),
            as_5d(&shape_of(&fx["input"]["shape"])),
        ),
        &device,
    );
    assert!(input.is_autodiff());
    let outputs = net.forward(input);
    let reference = fx["train_outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), reference.len());
    for (i, (ours, theirs)) in outputs.into_iter().zip(reference).enumerate() {
        assert_eq!(ours.dims(), as_5d(&shape_of(&theirs["shape"])));
        let diff = max_abs_diff(&values(ours.inner()), &floats(&theirs["values"]));
        assert!(diff < 1e-4, "training output {i} differs by {diff}");
    }
    let params = net.export_parameters();
    for (name, stat) in named_entries(&fx["running_stats_after_train"]) {
        let ours = params
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        let diff = max_abs_diff(&ours.values, &floats(&stat["values"]));
        assert!(diff < 1e-5, "{name} differs by {diff}");
    }
    // The copy made before training shares no running statistics with the network.
    let unchanged = copy.export_parameters();
    for (a, b) in before.iter().zip(&unchanged) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.values, b.values, "{} changed in the copy", a.name);
    }
}

#[test]
fn moving_off_autodiff_stops_gradient_tracking() {
    // What validation does with the training network: a forward pass off autodiff must record no
    // graph (a recorded graph that no backward pass consumes holds every activation).
    let device = Device::flex().autodiff();
    let (fx, net) = tiny_on("plain_2d", &device);
    let input = |device: &Device| {
        Tensor::<5>::from_data(
            TensorData::new(
                floats(&fx["input"]["values"]),
                as_5d(&shape_of(&fx["input"]["shape"])),
            ),
            device,
        )
    };
    let on_autodiff = net.forward(input(&device));
    assert!(on_autodiff[0].is_tracked());
    let mut inference = net.boxed_clone();
    inference.to_device(&Device::flex());
    for output in inference.forward(input(&Device::flex())) {
        assert!(!output.is_tracked());
    }
    // The training network itself still tracks.
    assert!(net.forward(input(&device))[0].is_tracked());
}

/// The squared-output loss of `net` on the fixture's input scaled by `factor`.
fn squared_output_loss(fx: &Value, net: &dyn Network, factor: f32, device: &Device) -> Tensor<1> {
    let input = Tensor::<5>::from_data(
        TensorData::new(
            floats(&fx["input"]["values"]),
            as_5d(&shape_of(&fx["input"]["shape"])),
        ),
        device,
    ) * factor;
    net.forward(input)
        .into_iter()
        .map(|o| o.powi_scalar(2).mean())
        .reduce(|a, b| a + b)
        .unwrap()
}

/// Every parameter's gradient in `grads` by path (`None` where it has none).
fn gradients_by_path(
    net: &mut dyn Network,
    grads: &nnunet_core::burn::optim::GradientsParams,
) -> Vec<(String, Option<Vec<f32>>)> {
    let mut ids = ParamIds(Vec::new());
    net.update_parameters(&mut ids);
    let shapes = net.parameter_shapes();
    ids.0
        .into_iter()
        .map(|(path, id)| {
            let rank = shapes.iter().find(|(p, _)| *p == path).unwrap().1.len();
            let data = match rank {
                1 => grads.get::<1>(id).map(|t| t.into_data()),
                2 => grads.get::<2>(id).map(|t| t.into_data()),
                3 => grads.get::<3>(id).map(|t| t.into_data()),
                4 => grads.get::<4>(id).map(|t| t.into_data()),
                _ => grads.get::<5>(id).map(|t| t.into_data()),
            };
            let values = data.map(|d| d.convert::<f32>().try_to_vec::<f32>().unwrap());
            (path, values)
        })
        .collect()
}

#[test]
fn frozen_parameters_get_no_gradient_until_thawed() {
    let device = Device::flex().autodiff();
    let (fx, mut net) = tiny_on("plain_2d", &device);
    let encoder = |path: &str| path.starts_with("encoder.");
    net.set_frozen(&encoder);
    let loss = squared_output_loss(&fx, net.as_ref(), 1.0, &device);
    let grads = net.gradients(loss.backward());
    let by_path = gradients_by_path(net.as_mut(), &grads);
    assert!(by_path.iter().any(|(p, _)| encoder(p)));
    for (path, grad) in &by_path {
        assert_eq!(grad.is_some(), !encoder(path), "{path}");
    }
    // Freezing survives an optimiser-style update of the values, and thawing restores gradients.
    net.set_frozen(&|_| false);
    let loss = squared_output_loss(&fx, net.as_ref(), 1.0, &device);
    let grads = net.gradients(loss.backward());
    for (path, grad) in gradients_by_path(net.as_mut(), &grads) {
        assert!(grad.is_some(), "{path} has no gradient after thawing");
    }
}

#[test]
fn accumulated_gradients_are_the_gradients_of_the_summed_losses() {
    let device = Device::flex().autodiff();
    let (fx, mut net) = tiny_on("plain_2d", &device);
    let first = squared_output_loss(&fx, net.as_ref(), 1.0, &device);
    let mut sum = net.gradients(first.backward());
    let second = squared_output_loss(&fx, net.as_ref(), -0.5, &device);
    net.add_gradients(&mut sum, net.gradients(second.backward()));
    let both = squared_output_loss(&fx, net.as_ref(), 1.0, &device)
        + squared_output_loss(&fx, net.as_ref(), -0.5, &device);
    let expected = net.gradients(both.backward());
    let (ours, reference) = (
        gradients_by_path(net.as_mut(), &sum),
        gradients_by_path(net.as_mut(), &expected),
    );
    assert!(!ours.is_empty());
    for ((path, a), (_, b)) in ours.into_iter().zip(reference) {
        let (a, b) = (a.unwrap(), b.unwrap());
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&a, &b);
        assert!(
            diff <= 1e-5 * scale.max(1e-6),
            "{path}: {diff} (largest {scale})"
        );
    }
}

/// Records every parameter's id by path.
struct ParamIds(Vec<(String, ParamId)>);

impl ParameterUpdate for ParamIds {
    fn update(&mut self, path: &str, id: ParamId, _value: &ErasedTensor) -> Option<ErasedTensor> {
        self.0.push((path.to_string(), id));
        None
    }
}

fn assert_gradient_parity(name: &str) {
    // Built on the autodiff device: parameters made elsewhere and moved with `to_device` are not
    // tracked (burn's `fork` keeps their no-grad state).
    let device = Device::flex().autodiff();
    let (fx, mut net) = tiny_on(name, &device);
    let input = Tensor::<5>::from_data(
        TensorData::new(
            floats(&fx["input"]["values"]),
            as_5d(&shape_of(&fx["input"]["shape"])),
        ),
        &device,
    );
    let loss = net
        .forward(input)
        .into_iter()
        .map(|o| o.powi_scalar(2).mean())
        .reduce(|a, b| a + b)
        .unwrap();
    let grads = net.gradients(loss.backward());
    let mut ids = ParamIds(Vec::new());
    net.update_parameters(&mut ids);
    for (path, g) in named_entries(&fx["gradients"]) {
        let id = ids
            .0
            .iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("{name}: no parameter {path}"))
            .1;
        let reference = floats(&g["values"]);
        let ours: Vec<f32> = match net
            .parameter_shapes()
            .iter()
            .find(|(p, _)| p == path)
            .unwrap()
            .1
            .len()
        {
            1 => grads.get::<1>(id).map(|t| t.into_data()),
            4 => grads.get::<4>(id).map(|t| t.into_data()),
            _ => grads.get::<5>(id).map(|t| t.into_data()),
        }
        .unwrap_or_else(|| panic!("{name}: no gradient for {path}"))
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
        let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&ours, &reference);
        assert!(
            diff <= 1e-4 * scale.max(1e-3),
            "{name}: gradient of {path} differs by {diff} (largest {scale})"
        );
    }
}

#[test]
fn plain_2d_gradients_match_the_reference() {
    assert_gradient_parity("plain_2d");
}

#[test]
fn residual_encoder_3d_gradients_match_the_reference() {
    assert_gradient_parity("resenc_3d");
}

#[test]
fn without_deep_supervision_one_full_resolution_output() {
    for name in ["plain_3d", "resenc_3d"] {
        let (fx, mut net) = tiny(name);
        net.set_deep_supervision(false);
        let outputs = net.forward(input_of(&fx));
        assert_eq!(outputs.len(), 1, "{name}");
        let full = &fx["outputs"][0];
        assert_eq!(
            outputs[0].dims(),
            as_5d(&shape_of(&full["shape"])),
            "{name}"
        );
        let diff = max_abs_diff(&values(outputs[0].clone()), &floats(&full["values"]));
        assert!(diff < 1e-4, "{name}: differs by {diff}");

        // Built without deep supervision from the start: same parameters, one output.
        let spec = spec_of(&fx, false);
        let fresh = build(fx["network_class_name"].as_str().unwrap(), &spec).unwrap();
        assert_eq!(fresh.parameter_shapes(), net.parameter_shapes());
        assert_eq!(fresh.forward(input_of(&fx)).len(), 1);
    }
}

#[test]
fn a_2d_network_segments_every_z_slice_independently() {
    let (fx, net) = tiny("plain_2d");
    let [b, c, _, y, x] = as_5d(&shape_of(&fx["input"]["shape"]));
    let z = 3;
    let n = b * c * z * y * x;
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let volume = tensor5([b, c, z, y, x], data);
    let outputs = net.forward(volume.clone());
    assert_eq!(outputs.len(), 2);
    for slice in 0..z {
        let single = net.forward(volume.clone().narrow(2, slice, 1));
        for (whole, one) in outputs.iter().zip(single) {
            let part = whole.clone().narrow(2, slice, 1);
            assert_eq!(part.dims(), one.dims());
            let diff = max_abs_diff(&values(part), &values(one));
            assert!(diff < 1e-5, "slice {slice} differs by {diff}");
        }
    }
}

fn std_and_mean(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (var.sqrt(), mean)
}

#[test]
fn initialisation_follows_init_weights_he() {
    let gain = (2.0f64 / (1.0 + 1e-4)).sqrt();
    let kwargs = json!({
        "n_stages": 3, "features_per_stage": [16, 32, 48],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        "n_blocks_per_stage": [1, 2, 2], "n_conv_per_stage_decoder": [1, 1],
        "conv_bias": true,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": true},
        "dropout_op": null, "dropout_op_kwargs": null,
        "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": true}
    });
    let spec = NetworkSpec {
        arch_kwargs: kwargs,
        input_channels: 1,
        output_channels: 2,
        deep_supervision: true,
        is_2d: false,
        batch_norm: false,
    };
    let net = build("ResidualEncoderUNet", &spec).unwrap();
    let params = net.export_parameters();
    let get = |name: &str| {
        params
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    };
    // conv: fan_in = in * k^3
    let w = get("encoder.stages.2.blocks.1.conv1.conv.weight");
    let (std, mean) = std_and_mean(&w.values);
    let expected = gain / ((48 * 27) as f64).sqrt();
    assert!(
        (std / expected - 1.0).abs() < 0.03,
        "conv std {std} vs {expected}"
    );
    assert!(mean.abs() < 0.1 * expected);
    // transposed conv [in, out, k...]: torch takes the fan-in from dim 1 (out * k^3)
    let t = get("decoder.transpconvs.0.weight");
    assert_eq!(t.shape, vec![48, 32, 2, 2, 2]);
    let (std, _) = std_and_mean(&t.values);
    let expected = gain / ((32 * 8) as f64).sqrt();
    assert!(
        (std / expected - 1.0).abs() < 0.05,
        "transpconv std {std} vs {expected}"
    );
    for p in &params {
        if p.name.ends_with(".bias") {
            // conv, transposed-conv and norm biases all start at zero
            assert!(p.values.iter().all(|&v| v == 0.0), "{}", p.name);
        }
        if p.name.ends_with("norm.weight") {
            // init_last_bn_before_add_to_0: the residual branch's last norm starts at zero.
            let expected = if p.name.contains(".conv2.norm") {
                0.0
            } else {
                1.0
            };
            assert!(p.values.iter().all(|&v| v == expected), "{}", p.name);
        }
    }
}

#[test]
fn batch_norm_flag_swaps_instance_norm_for_batch_norm() {
    let fx = fixture("tiny_plain_2d.json");
    let mut spec = spec_of(&fx, true);
    spec.batch_norm = true;
    let net = build("PlainConvUNet", &spec).unwrap();
    let names: Vec<String> = net.parameter_shapes().into_iter().map(|(n, _)| n).collect();
    let expected_prefix = "encoder.stages.0.0.convs.0.norm.";
    let norm: Vec<&str> = names
        .iter()
        .filter(|n| n.starts_with(expected_prefix))
        .map(|n| &n[expected_prefix.len()..])
        .collect();
    assert_eq!(norm, ["weight", "bias", "running_mean", "running_var"]);
    // The batch-norm fixture's names (without torch's num_batches_tracked) are ours.
    let bn = fixture("tiny_plain_2d_bn.json");
    let reference: Vec<String> = bn["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .filter(|n| !is_state_dict_alias(n))
        .collect();
    let bn_net = build("PlainConvUNet", &spec_of(&bn, true)).unwrap();
    let ours: Vec<String> = bn_net
        .parameter_shapes()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(ours, reference);
}

#[test]
fn torch_state_dict_aliases_are_recognised() {
    assert!(is_state_dict_alias(
        "encoder.stages.0.0.convs.0.all_modules.0.weight"
    ));
    assert!(is_state_dict_alias(
        "decoder.encoder.stages.0.0.convs.0.conv.weight"
    ));
    assert!(is_state_dict_alias(
        "decoder.stages.0.convs.0.norm.num_batches_tracked"
    ));
    assert!(!is_state_dict_alias("decoder.stages.0.convs.0.conv.weight"));
    assert!(!is_state_dict_alias("decoder.seg_layers.0.bias"));
}

#[test]
fn input_shape_is_checked() {
    let fx = fixture("tiny_plain_3d.json");
    let spec = spec_of(&fx, true);
    let net = PlainConvUNet::new(&spec, &Device::flex()).unwrap();
    // total stride [2, 4, 4]
    net.check_input([1, 1, 4, 8, 8]).unwrap();
    let err = net.check_input([1, 2, 4, 8, 8]).unwrap_err().to_string();
    assert!(err.contains("input channels"), "{err}");
    let err = net.check_input([1, 1, 4, 8, 6]).unwrap_err().to_string();
    assert!(
        err.contains("x size 6") && err.contains("stride 4"),
        "{err}"
    );
    let err = net.check_input([1, 1, 3, 8, 8]).unwrap_err().to_string();
    assert!(err.contains("z size 3"), "{err}");

    let fx = fixture("tiny_resenc_3d.json");
    let net = ResidualEncoderUNet::new(&spec_of(&fx, true), &Device::flex()).unwrap();
    net.check_input([1, 2, 2, 4, 4]).unwrap();
    assert!(net.check_input([1, 2, 2, 4, 5]).is_err());
}

fn plain_kwargs() -> Value {
    fixture("tiny_plain_3d.json")["arch_kwargs"].clone()
}

fn error_of(class: &str, kwargs: Value, is_2d: bool) -> String {
    let spec = NetworkSpec {
        arch_kwargs: kwargs,
        input_channels: 1,
        output_channels: 2,
        deep_supervision: true,
        is_2d,
        batch_norm: false,
    };
    match build(class, &spec) {
        Ok(_) => panic!("{class} accepted invalid kwargs {}", spec.arch_kwargs),
        Err(e) => e.to_string(),
    }
}

/// A change to valid kwargs that makes them invalid.
type KwargsEdit = Box<dyn Fn(&mut Value)>;

#[test]
fn invalid_arch_kwargs_are_errors_naming_the_field() {
    let assert_names = |err: String, field: &str| {
        assert!(
            err.contains(&format!("`{field}`")),
            "error for `{field}` does not name it: {err}"
        );
    };
    // One PlainConvUNet field replaced by an invalid value: (key, value, the field named).
    let replaced = [
        ("n_stages", json!(1), "n_stages"),
        ("features_per_stage", json!([3, 4]), "features_per_stage"),
        (
            "strides",
            json!([[1, 1, 1], [1, 2], [2, 2, 2]]),
            "strides[1]",
        ),
        (
            "kernel_sizes",
            json!([[1, 3, 3], [3, 0, 3], [3, 3, 3]]),
            "kernel_sizes[1][1]",
        ),
        ("conv_op", json!("torch.nn.modules.conv.Conv1d"), "conv_op"),
        (
            "norm_op",
            json!("torch.nn.modules.instancenorm.InstanceNorm2d"),
            "norm_op",
        ),
        (
            "norm_op_kwargs",
            json!({"eps": "small"}),
            "norm_op_kwargs.eps",
        ),
        (
            "dropout_op",
            json!("torch.nn.modules.dropout.Dropout3d"),
            "dropout_op",
        ),
        ("nonlin", json!("torch.nn.GELU"), "nonlin"),
        (
            "nonlin_kwargs",
            json!({"negative_slope": "x"}),
            "nonlin_kwargs.negative_slope",
        ),
        (
            "n_conv_per_stage_decoder",
            json!([2, 2, 2]),
            "n_conv_per_stage_decoder",
        ),
        ("conv_bias", json!("yes"), "conv_bias"),
        ("n_blocks_per_stage", json!([1, 1, 1]), "n_blocks_per_stage"),
    ];
    // Other changes: (class, change, the field named).
    let cases: Vec<(&str, KwargsEdit, &str)> = vec![
        (
            "PlainConvUNet",
            Box::new(|k| {
                k.as_object_mut().unwrap().remove("n_stages");
            }),
            "n_stages",
        ),
        (
            "ResidualEncoderUNet",
            Box::new(|k| {
                let n = k
                    .as_object_mut()
                    .unwrap()
                    .remove("n_conv_per_stage")
                    .unwrap();
                k["n_blocks_per_stage"] = n;
                k["block"] =
                    json!("dynamic_network_architectures.building_blocks.residual.BottleneckD");
            }),
            "block",
        ),
        ("ResidualEncoderUNet", Box::new(|_| {}), "n_conv_per_stage"),
    ];
    for (key, value, field) in replaced {
        let mut kwargs = plain_kwargs();
        kwargs[key] = value;
        assert_names(error_of("PlainConvUNet", kwargs, false), field);
    }
    for (class, change, field) in cases {
        let mut kwargs = plain_kwargs();
        change(&mut kwargs);
        assert_names(error_of(class, kwargs, false), field);
    }
    // A 3D conv_op in a 2D configuration.
    let err = error_of("PlainConvUNet", plain_kwargs(), true);
    assert!(err.contains("conv_op"), "{err}");
    // Not an object at all.
    let err = error_of("PlainConvUNet", json!([1, 2]), false);
    assert!(err.contains("arch_kwargs"), "{err}");
}

#[test]
fn importing_weights_of_another_topology_is_an_error() {
    let (fx, _) = tiny("plain_3d");
    let other = fixture("tiny_resenc_3d.json");
    let mut net = build(
        fx["network_class_name"].as_str().unwrap(),
        &spec_of(&fx, true),
    )
    .unwrap();
    assert!(net.import_parameters(&reference_weights(&other)).is_err());
}
