//! `nnunet convert-folder`: a folder of images and masks into an nnU-Net v2 raw dataset.
//!
//! ```text
//! # one folder per case: cases/0/image.png, cases/0/label.png, …
//! nnunet convert-folder -i cases --image-name image.png --label-name label.png -d 501 -n Cells
//! # image and mask folders matched by name: images/Image_01L.jpg ↔ masks/Image_01L_1stHO.png
//! nnunet convert-folder --images images --labels masks --label-suffix _1stHO -d 502 -n Retina
//! ```

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use nnunet_plugins::conversion::folder::{FolderConversion, Layout, TestSplit, convert_folder};

use crate::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder with one subfolder per case (with --image-name and --label-name).
    #[arg(short = 'i', long = "input", conflicts_with_all = ["images", "labels"])]
    input: Option<PathBuf>,
    /// Name of the image file inside each case folder.
    #[arg(long, default_value = "image.png")]
    image_name: String,
    /// Name of the mask file inside each case folder.
    #[arg(long, default_value = "label.png")]
    label_name: String,
    /// Folder of images (with --labels), matched to masks by name.
    #[arg(long, requires = "labels")]
    images: Option<PathBuf>,
    /// Folder of masks (with --images).
    #[arg(long, requires = "images")]
    labels: Option<PathBuf>,
    /// What a mask's name adds to its image's name (Image_01L.jpg -> Image_01L_1stHO.png).
    #[arg(long, default_value = "")]
    label_suffix: String,
    /// ID of the new dataset.
    #[arg(short = 'd', long = "dataset-id")]
    dataset_id: u32,
    /// Name of the new dataset (DatasetXXX_<name>).
    #[arg(short = 'n', long = "name")]
    name: String,
    /// Map a mask value to a label, FROM:TO (repeatable), e.g. --map 255:1. Masks holding only 0
    /// and 255 are mapped to 0/1 without it.
    #[arg(long = "map", value_name = "FROM:TO")]
    map: Vec<String>,
    /// Store RGB images as one grayscale channel (default: R, G, B channels).
    #[arg(long)]
    grayscale: bool,
    /// Cases to hold out as test cases (comma-separated names).
    #[arg(long, value_delimiter = ',', conflicts_with = "test_fraction")]
    test_cases: Vec<String>,
    /// Fraction of the labelled cases to hold out as test cases, drawn with --seed.
    #[arg(long)]
    test_fraction: Option<f64>,
    /// Seed of the test-case draw.
    #[arg(long, default_value_t = 12345)]
    seed: u64,
    /// Channel names (comma-separated; default image, or R,G,B).
    #[arg(long, value_delimiter = ',')]
    channel_names: Vec<String>,
    /// Label names from 0 upwards (comma-separated; default background,label_1,…).
    #[arg(long, value_delimiter = ',')]
    label_names: Vec<String>,
    /// Replace an existing dataset of the same ID and name.
    #[arg(long)]
    overwrite: bool,
}

fn parse_map(entry: &str) -> anyhow::Result<(i64, i64)> {
    let (from, to) = entry
        .split_once(':')
        .with_context(|| format!("--map {entry}: expected FROM:TO, e.g. 255:1"))?;
    Ok((
        from.trim()
            .parse()
            .with_context(|| format!("--map {entry}: '{from}' is not an integer"))?,
        to.trim()
            .parse()
            .with_context(|| format!("--map {entry}: '{to}' is not an integer"))?,
    ))
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let layout = match (args.input, args.images, args.labels) {
        (Some(root), None, None) => Layout::PerCase {
            root,
            image_name: args.image_name,
            label_name: args.label_name,
        },
        (None, Some(images), Some(labels)) => Layout::Split {
            images,
            labels,
            label_suffix: args.label_suffix,
        },
        _ => bail!("give either -i CASES_FOLDER, or --images DIR and --labels DIR"),
    };
    let test_split = if !args.test_cases.is_empty() {
        TestSplit::Cases(args.test_cases)
    } else if let Some(fraction) = args.test_fraction {
        TestSplit::Fraction {
            fraction,
            seed: args.seed,
        }
    } else {
        TestSplit::None
    };
    let job = FolderConversion {
        layout,
        dataset_id: args.dataset_id,
        dataset_name: args.name,
        label_map: args
            .map
            .iter()
            .map(|m| parse_map(m))
            .collect::<anyhow::Result<_>>()?,
        grayscale: args.grayscale,
        test_split,
        channel_names: (!args.channel_names.is_empty()).then_some(args.channel_names),
        label_names: (!args.label_names.is_empty()).then_some(args.label_names),
        overwrite: args.overwrite,
    };
    let report = convert_folder(&job, &ctx.paths)?;
    for message in &report.messages {
        eprintln!("note: {message}");
    }
    println!(
        "wrote {} ({} training case(s), {} test case(s)); check it with `nnunet verify -d {}`",
        report.target.display(),
        report.training_cases,
        report.test_cases,
        job.dataset_id
    );
    Ok(())
}
