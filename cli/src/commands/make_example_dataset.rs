//! `nnunet make-example-dataset -d ID [--3d] [--cases N] [--shape Z Y X] [--seed S]`: writes a
//! generated dataset (noisy images with a bright ellipsoid, label 1, and a dark box, label 2) in
//! nnU-Net's raw format into `nnUNet_raw`, to try nnunet or test a set-up without real data.

use nnunet_plugins::synthetic::{SyntheticSpec, write_synthetic_dataset};

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Dataset ID of the new dataset.
    #[arg(short = 'd', long = "dataset")]
    id: u32,
    /// 3D volumes (NIfTI) instead of 2D images (PNG).
    #[arg(long = "3d")]
    three_d: bool,
    /// Number of training cases.
    #[arg(long = "cases")]
    cases: Option<usize>,
    /// Number of test cases (imagesTs, with their labels in labelsTs).
    #[arg(long = "test-cases")]
    test_cases: Option<usize>,
    /// Image shape: Z Y X (3D) or Y X (2D).
    #[arg(long = "shape", num_args = 2..=3)]
    shape: Option<Vec<usize>>,
    /// Dataset name (the folder is DatasetXXX_NAME).
    #[arg(long = "name")]
    name: Option<String>,
    /// Declare nnU-Net regions (whole = labels 1 and 2, box = label 2) for region-based training.
    #[arg(long = "regions")]
    regions: bool,
    /// Random seed.
    #[arg(long = "seed")]
    seed: Option<u64>,
}

/// The dataset `args` describe.
pub(crate) fn spec(args: &Args) -> anyhow::Result<SyntheticSpec> {
    let mut spec = if args.three_d {
        SyntheticSpec::small_3d(args.id)
    } else {
        SyntheticSpec::small_2d(args.id)
    };
    if let Some(n) = args.cases {
        spec.cases = n;
    }
    if let Some(n) = args.test_cases {
        spec.test_cases = n;
    }
    if let Some(shape) = &args.shape {
        spec.shape = match (shape.as_slice(), args.three_d) {
            ([z, y, x], true) => [*z, *y, *x],
            ([y, x], false) => [1, *y, *x],
            _ => anyhow::bail!(
                "--shape needs {} sizes for a {} dataset",
                if args.three_d { 3 } else { 2 },
                if args.three_d { "3D" } else { "2D" }
            ),
        };
        if spec
            .shape
            .iter()
            .skip(usize::from(!args.three_d))
            .any(|&s| s < 8)
        {
            anyhow::bail!("--shape: every size must be at least 8");
        }
    }
    if let Some(name) = &args.name {
        spec.name = name.clone();
    }
    spec.regions = args.regions;
    if let Some(seed) = args.seed {
        spec.seed = seed;
    }
    if spec.cases < 1 {
        anyhow::bail!("--cases must be at least 1");
    }
    Ok(spec)
}

/// Runs `nnunet make-example-dataset`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let spec = spec(&args)?;
    let folder = write_synthetic_dataset(ctx.paths.raw()?, &spec)?;
    crate::output::say(format_args!(
        "wrote {} ({} training and {} test cases, {})",
        folder.display(),
        spec.cases,
        spec.test_cases,
        if spec.three_d { "3D NIfTI" } else { "2D PNG" }
    ))
}
