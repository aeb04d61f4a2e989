//! `nnunet plot-overlay -i IMAGES -s SEGMENTATIONS -o OUT` (or `-d ID -o OUT` for a raw
//! dataset's imagesTr/labelsTr): nnU-Net's `nnUNetv2_plot_overlay_pngs`. One PNG per case: a
//! slice of the image (greyscale, scaled to 0..255) with every label value of that slice added in
//! its colour of nnU-Net's colour cycle at `overlay_intensity`. For 3D cases the slice is the one
//! nnU-Net picks (the most foreground, averaged over the labels present), unless `--slice` says.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ndarray::{Array2, ArrayView2, ArrayView3, Axis};
use nnunet_core::io::Reader;
use nnunet_dataset::choose_reader_for;

use crate::Context;

/// nnU-Net's colour cycle (index = rank of the label value among the values in the slice).
const COLOR_CYCLE: [[u8; 3]; 15] = [
    [0x00, 0x00, 0x00],
    [0x43, 0x63, 0xd8],
    [0xf5, 0x82, 0x31],
    [0x3c, 0xb4, 0x4b],
    [0xe6, 0x19, 0x4b],
    [0x91, 0x1e, 0xb4],
    [0xff, 0xe1, 0x19],
    [0xbf, 0xef, 0x45],
    [0x42, 0xd4, 0xf4],
    [0xf0, 0x32, 0xe6],
    [0x00, 0x00, 0x75],
    [0x9a, 0x63, 0x24],
    [0x80, 0x80, 0x00],
    [0x80, 0x00, 0x00],
    [0x46, 0x99, 0x90],
];

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// An image file, or a folder of images (case_0000.ext, as imagesTr).
    #[arg(
        short = 'i',
        value_name = "IMAGE_FOLDER_OR_FILE",
        required_unless_present = "dataset"
    )]
    images: Option<PathBuf>,
    /// A segmentation file, or a folder of segmentations (case.ext, as labelsTr).
    #[arg(
        short = 's',
        value_name = "SEG_FOLDER_OR_FILE",
        required_unless_present = "dataset"
    )]
    segmentations: Option<PathBuf>,
    /// Use a raw dataset's imagesTr and labelsTr instead of -i and -s.
    #[arg(short = 'd', value_name = "DATASET", conflicts_with_all = ["images", "segmentations"])]
    dataset: Option<String>,
    /// Output folder (or, for one case, a .png file).
    #[arg(short = 'o', value_name = "OUT")]
    output: PathBuf,
    /// The image channel to show.
    #[arg(long = "channel-idx", default_value_t = 0)]
    channel_idx: usize,
    /// The slice (z index) to show instead of the one with the most foreground.
    #[arg(long = "slice")]
    slice: Option<usize>,
    /// How strongly labels are coloured.
    #[arg(long = "overlay-intensity", default_value_t = 0.6)]
    overlay_intensity: f64,
    /// Worker threads (accepted for nnU-Net compatibility; cases are drawn one after another).
    #[arg(long = "num-processes", value_name = "N")]
    num_processes: Option<usize>,
}

/// nnU-Net's `select_slice_to_plot2`: per label present, its voxel count per slice divided by
/// the sum of the whole table so far, averaged over the labels; the slice with the highest value.
pub(crate) fn select_slice(segmentation: ArrayView3<'_, i16>) -> usize {
    let nz = segmentation.shape()[0];
    let mut classes: Vec<i16> = segmentation.iter().copied().filter(|&v| v > 0).collect();
    classes.sort_unstable();
    classes.dedup();
    if classes.is_empty() {
        return 0;
    }
    let mut table = Array2::<f64>::zeros((nz, classes.len()));
    for (i, &c) in classes.iter().enumerate() {
        for (z, slice) in segmentation.axis_iter(Axis(0)).enumerate() {
            table[[z, i]] = slice.iter().filter(|&&v| v == c).count() as f64;
        }
        let total = table.sum();
        table.column_mut(i).mapv_inplace(|v| v / total);
    }
    let mean = table.mean_axis(Axis(1)).expect("at least one class");
    let mut best = 0;
    for (z, &v) in mean.iter().enumerate() {
        if v > mean[best] {
            best = z;
        }
    }
    best
}

/// nnU-Net's `generate_overlay` on one slice: RGB bytes, row-major `[y, x, 3]`.
pub(crate) fn overlay(
    image: ArrayView2<'_, f32>,
    seg: ArrayView2<'_, i16>,
    intensity: f64,
) -> Vec<u8> {
    let min = image.iter().fold(f64::INFINITY, |m, &v| m.min(v as f64));
    let mut grey: Vec<f64> = image.iter().map(|&v| v as f64 - min).collect();
    let max = grey.iter().fold(0.0f64, |m, &v| m.max(v));
    if max > 0.0 && max.is_finite() {
        grey.iter_mut().for_each(|v| *v = *v / max * 255.0);
    }
    let mut values: Vec<i16> = seg.iter().copied().collect();
    values.sort_unstable();
    values.dedup();
    let mut rgb: Vec<f64> = Vec::with_capacity(grey.len() * 3);
    for (&g, &s) in grey.iter().zip(seg.iter()) {
        let rank = values.binary_search(&s).unwrap_or(0);
        let color = COLOR_CYCLE[rank % COLOR_CYCLE.len()];
        for c in color {
            rgb.push(g + intensity * c as f64);
        }
    }
    let max = rgb.iter().fold(0.0f64, |m, &v| m.max(v));
    rgb.iter()
        .map(|&v| {
            let v = if max > 0.0 { v / max * 255.0 } else { v };
            v.clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// The longest file ending a registered reader handles that `name` has (in `name`'s own case).
pub(crate) fn known_ending(ctx: &Context, name: &str) -> Option<String> {
    let lower = name.to_lowercase();
    ctx.registries
        .readers
        .entries()
        .flat_map(|e| {
            e.create()
                .file_endings()
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        })
        .filter(|e| lower.ends_with(&e.to_lowercase()))
        .max_by_key(String::len)
        .map(|e| name[name.len() - e.len()..].to_string())
}

/// The reader for `file` by its ending, and the ending.
fn reader_for_file(ctx: &Context, file: &Path) -> anyhow::Result<(Box<dyn Reader>, String)> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ending = known_ending(ctx, &name).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no registered reader handles this file ending",
            file.display()
        )
    })?;
    let reader = choose_reader_for(&ctx.registries, None, &ending, Some(file))?.create();
    Ok((reader, ending))
}

/// Writes the overlay of `seg_file` on channel `-channel_idx` of `image_file` as the PNG
/// `output`; returns the slice plotted.
fn plot_case(
    reader: &dyn Reader,
    image_file: &Path,
    seg_file: &Path,
    output: &Path,
    args: &Args,
) -> anyhow::Result<usize> {
    let image = reader.read_images(&[image_file])?;
    let seg = reader.read_segmentation(seg_file)?;
    let channels = image.data.shape()[0];
    if args.channel_idx >= channels {
        anyhow::bail!(
            "{}: the image has {channels} channel(s); -channel_idx {} does not exist",
            image_file.display(),
            args.channel_idx
        );
    }
    let image = image.data.index_axis(Axis(0), args.channel_idx);
    let seg = seg.data.index_axis(Axis(0), 0);
    if image.shape() != seg.shape() {
        anyhow::bail!(
            "{}: the segmentation has shape {:?} but the image {} has shape {:?}",
            seg_file.display(),
            seg.shape(),
            image_file.display(),
            image.shape()
        );
    }
    let nz = seg.shape()[0];
    let z = match args.slice {
        Some(z) if z >= nz => anyhow::bail!(
            "{}: --slice {z} is outside the {nz} slices of the case",
            seg_file.display()
        ),
        Some(z) => z,
        None => select_slice(seg),
    };
    let bytes = overlay(
        image.index_axis(Axis(0), z),
        seg.index_axis(Axis(0), z),
        args.overlay_intensity,
    );
    let (h, w) = (seg.shape()[1], seg.shape()[2]);
    let png = image::RgbImage::from_raw(w as u32, h as u32, bytes)
        .ok_or_else(|| anyhow::anyhow!("{}: cannot build the overlay image", output.display()))?;
    if let Some(parent) = output.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create the folder", parent.display()))?;
    }
    png.save(output)
        .with_context(|| format!("{}: cannot write the PNG", output.display()))?;
    Ok(z)
}

/// `nnunet plot-overlay`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let (images, segs) = match &args.dataset {
        Some(d) => {
            let name = ctx.paths.dataset_name(d)?;
            let root = ctx.paths.raw()?.join(name);
            (root.join("imagesTr"), root.join("labelsTr"))
        }
        None => (
            args.images.clone().unwrap_or_default(),
            args.segmentations.clone().unwrap_or_default(),
        ),
    };
    if segs.is_file() {
        return plot_file(ctx, &images, &segs, &args);
    }
    if !segs.is_dir() {
        anyhow::bail!(
            "{}: no such file or folder (the segmentations)",
            segs.display()
        );
    }
    if !images.is_dir() {
        anyhow::bail!(
            "{}: not a folder (with a folder of segmentations, -i must be the folder of images)",
            images.display()
        );
    }
    plot_folder(ctx, &images, &segs, &args)
}

/// Plots the one segmentation file `segs` over the image file `images` into `args.output` (a
/// `.png` file, or a folder that gets `CASE.png`).
fn plot_file(ctx: &Context, images: &Path, segs: &Path, args: &Args) -> anyhow::Result<()> {
    if !images.is_file() {
        anyhow::bail!(
            "{}: not a file (with a segmentation file, -i must be its image file)",
            images.display()
        );
    }
    let (reader, ending) = reader_for_file(ctx, segs)?;
    let output = if args.output.extension().is_some_and(|e| e == "png") {
        args.output.clone()
    } else {
        let name = segs.file_name().unwrap_or_default().to_string_lossy();
        let case = &name[..name.len() - ending.len()];
        args.output.join(format!("{case}.png"))
    };
    let z = plot_case(reader.as_ref(), images, segs, &output, args)?;
    crate::output::say(format_args!("slice {z} written to {}", output.display()))
}

/// The files of the folder `segs` with a known file ending, sorted; none is an error.
fn segmentation_files(ctx: &Context, segs: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut seg_files: Vec<PathBuf> = std::fs::read_dir(segs)
        .with_context(|| format!("{}: cannot read the folder", segs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            known_ending(ctx, &p.file_name().unwrap_or_default().to_string_lossy()).is_some()
        })
        .collect();
    seg_files.sort();
    if seg_files.is_empty() {
        anyhow::bail!(
            "{}: no segmentations with a known file ending",
            segs.display()
        );
    }
    Ok(seg_files)
}

/// Plots every segmentation of the folder `segs` over its image in `images` (`CASE_XXXX.ending`
/// with `-channel_idx`, or the same file name) into `args.output/CASE.png`.
fn plot_folder(ctx: &Context, images: &Path, segs: &Path, args: &Args) -> anyhow::Result<()> {
    let seg_files = segmentation_files(ctx, segs)?;
    let (reader, _) = reader_for_file(ctx, &seg_files[0])?;
    let bar = crate::progress::bar(seg_files.len(), "plotting");
    for seg_file in &seg_files {
        let name = seg_file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let ending = known_ending(ctx, &name).unwrap_or_default();
        let case = &name[..name.len() - ending.len()];
        let channel_file = images.join(format!("{case}_{:04}{ending}", args.channel_idx));
        let image_file = if channel_file.is_file() {
            channel_file
        } else if images.join(&name).is_file() {
            images.join(&name)
        } else {
            anyhow::bail!(
                "{}: no image for this segmentation (expected {})",
                seg_file.display(),
                channel_file.display()
            );
        };
        // The channel is the file itself here.
        let single = Args {
            channel_idx: 0,
            ..clone_args(args)
        };
        plot_case(
            reader.as_ref(),
            &image_file,
            seg_file,
            &args.output.join(format!("{case}.png")),
            &single,
        )?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    crate::output::say(format_args!(
        "{} overlay(s) written to {}",
        seg_files.len(),
        args.output.display()
    ))
}

/// A copy of `a` (clap's `Args` derives no `Clone`).
fn clone_args(a: &Args) -> Args {
    Args {
        images: a.images.clone(),
        segmentations: a.segmentations.clone(),
        dataset: a.dataset.clone(),
        output: a.output.clone(),
        channel_idx: a.channel_idx,
        slice: a.slice,
        overlay_intensity: a.overlay_intensity,
        num_processes: a.num_processes,
    }
}
