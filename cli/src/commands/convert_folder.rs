//! `nnunet convert-folder`: a folder of images and masks into an nnU-Net v2 raw dataset.
//!
//! ```text
//! # one folder per case: cases/0/image.png, cases/0/label.png, cases/0/mask.png (region of
//! # interest), a separate test folder in the same layout (labels optional)
//! nnunet convert-folder -i crop_train --test-input crop_test --roi-name mask.png -d 501 -n Cells
//! # image and mask folders matched by name: images/Image_01L.jpg ↔ masks/Image_01L_1stHO.png
//! nnunet convert-folder --images images --labels masks --label-suffix _1stHO -d 502 -n Retina \
//!     --test-fraction 0.2 --group-by '^(Image_\d+)'
//! ```

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use nnunet_plugins::conversion::folder::{FolderConversion, Layout, TestSplit, convert_folder};

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Folder with one subfolder per case (with --image-name and --label-name).
    #[arg(short = 'i', long = "input", conflicts_with_all = ["images", "labels"])]
    input: Option<PathBuf>,
    /// Name of the image file inside each case folder.
    #[arg(long, default_value = "image.png")]
    image_name: String,
    /// Name of the mask file inside each case folder.
    #[arg(long, default_value = "label.png")]
    label_name: String,
    /// Name of the region-of-interest mask inside each case folder (nonzero inside); written to
    /// roisTr/ and roisTs/ named like the labels.
    #[arg(long, value_name = "NAME", conflicts_with = "rois")]
    roi_name: Option<String>,
    /// Folder of images (with --labels), matched to masks by name.
    #[arg(long, requires = "labels")]
    images: Option<PathBuf>,
    /// Folder of masks (with --images).
    #[arg(long, requires = "images")]
    labels: Option<PathBuf>,
    /// What a mask's name adds to its image's name (Image_01L.jpg -> Image_01L_1stHO.png).
    #[arg(long, default_value = "")]
    label_suffix: String,
    /// Folder of region-of-interest masks (with --images), matched by name with --roi-suffix.
    #[arg(long, value_name = "DIR", requires = "images")]
    rois: Option<PathBuf>,
    /// What a region of interest's name adds to its image's name (Image_01L -> Image_01L_mask).
    #[arg(long, default_value = "")]
    roi_suffix: String,
    /// Outside the region of interest, the label maps get nnU-Net's ignore label (declared as
    /// "ignore" in dataset.json), so that training leaves those pixels out.
    #[arg(long)]
    roi_as_ignore: bool,
    /// A separate folder of test cases in the layout of -i (labels optional: labelled cases also
    /// go to labelsTs/).
    #[arg(long, value_name = "DIR", requires = "input")]
    test_input: Option<PathBuf>,
    /// A separate folder of test images, in the layout of --images.
    #[arg(long, value_name = "DIR", requires = "images")]
    test_images: Option<PathBuf>,
    /// The masks of --test-images (optional).
    #[arg(long, value_name = "DIR", requires = "test_images")]
    test_labels: Option<PathBuf>,
    /// The regions of interest of --test-images (needed with --rois).
    #[arg(long, value_name = "DIR", requires = "test_images")]
    test_rois: Option<PathBuf>,
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
    /// With --test-fraction, draw whole groups of cases: a regular expression whose first group
    /// names a case's group (e.g. '^(Image_\d+)' keeps both eyes of a patient together).
    #[arg(long, value_name = "REGEX", requires = "test_fraction")]
    group_by: Option<String>,
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

/// Parses a `--map FROM:TO` entry.
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

/// The training layout and the test folder's layout (if any) the arguments describe.
fn layouts(args: &Args) -> anyhow::Result<(Layout, Option<Layout>)> {
    match (&args.input, &args.images, &args.labels) {
        (Some(root), None, None) => {
            let per_case = |root: &PathBuf| Layout::PerCase {
                root: root.clone(),
                image_name: args.image_name.clone(),
                label_name: args.label_name.clone(),
                roi_name: args.roi_name.clone(),
            };
            Ok((per_case(root), args.test_input.as_ref().map(per_case)))
        }
        (None, Some(images), Some(labels)) => {
            if args.rois.is_some() != args.test_rois.is_some() && args.test_images.is_some() {
                bail!("give the test images' regions of interest with --test-rois, as --rois");
            }
            let split = |images: &PathBuf, labels: Option<&PathBuf>, rois: Option<&PathBuf>| {
                Layout::Split {
                    images: images.clone(),
                    labels: labels.cloned(),
                    label_suffix: args.label_suffix.clone(),
                    rois: rois.cloned(),
                    roi_suffix: args.roi_suffix.clone(),
                }
            };
            let test = args
                .test_images
                .as_ref()
                .map(|t| split(t, args.test_labels.as_ref(), args.test_rois.as_ref()));
            Ok((split(images, Some(labels), args.rois.as_ref()), test))
        }
        _ => bail!("give either -i CASES_FOLDER, or --images DIR and --labels DIR"),
    }
}

/// Runs `nnunet convert-folder`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let (layout, test_layout) = layouts(&args)?;
    let test_split = if !args.test_cases.is_empty() {
        TestSplit::Cases(args.test_cases)
    } else if let Some(fraction) = args.test_fraction {
        TestSplit::Fraction {
            fraction,
            seed: args.seed,
            group_by: args.group_by,
        }
    } else {
        TestSplit::None
    };
    let job = FolderConversion {
        layout,
        test_layout,
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
        roi_as_ignore: args.roi_as_ignore,
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
