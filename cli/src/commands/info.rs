//! `nnunet info FILE…`: what nnU-Net sees in an image: the reader chosen for it, the array shape in
//! nnU-Net's axis order, spacing, geometry and intensity range per channel. Several files are read
//! as the channels of one case. `nnunet info DIR` lists the DICOM image series under a folder.

use std::path::PathBuf;
use std::time::Instant;

use nnunet_core::Reader;
use nnunet_core::io::ImageProperties;
use nnunet_core::registry::Entry;
use nnunet_dataset::choose_reader_for;

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Image files: one, or the channel files of one case in channel order; or a folder of DICOM
    /// files, whose series are listed.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Read with this reader (as `overwrite_image_reader_writer` in dataset.json).
    #[arg(long)]
    reader: Option<String>,
    /// Read the file as a label map.
    #[arg(long)]
    segmentation: bool,
}

/// `.nii.gz` for `a.nii.gz`, `.png` for `a.png`.
fn file_ending(file: &std::path::Path) -> String {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_lowercase();
    if let Some(double) = [".nii.gz", ".gipl.gz"].iter().find(|e| name.ends_with(*e)) {
        double.to_string()
    } else {
        name.rfind('.')
            .map(|i| name[i..].to_string())
            .unwrap_or_default()
    }
}

/// What [`read`] gives: the shape, the properties and one statistics line per channel.
type Summary = (Vec<usize>, ImageProperties, Vec<String>);

/// Reads the files with `entry`'s reader: shape, properties and one statistics line per channel.
fn read(args: &Args, entry: &Entry<dyn Reader>) -> anyhow::Result<Summary> {
    let reader = entry.create();
    let first = &args.files[0];
    if args.segmentation {
        anyhow::ensure!(
            args.files.len() == 1,
            "--segmentation reads one label map, not {} files",
            args.files.len()
        );
        let seg = reader.read_segmentation(first)?;
        let mut labels: Vec<i16> = seg.data.iter().copied().collect();
        labels.sort_unstable();
        labels.dedup();
        let stats = vec![format!("labels {labels:?}")];
        return Ok((seg.data.shape().to_vec(), seg.properties, stats));
    }
    let files: Vec<&std::path::Path> = args.files.iter().map(PathBuf::as_path).collect();
    let image = reader.read_images(&files)?;
    let stats = image
        .data
        .outer_iter()
        .enumerate()
        .map(|(c, channel)| {
            let (mut min, mut max, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0f64);
            for &v in channel.iter() {
                min = min.min(v);
                max = max.max(v);
                sum += v as f64;
            }
            let mean = sum / channel.len().max(1) as f64;
            format!("channel {c}: min {min}, max {max}, mean {mean:.4}")
        })
        .collect();
    Ok((image.data.shape().to_vec(), image.properties, stats))
}

/// Runs `nnunet info`.
pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let first = &args.files[0];
    if args.files.len() == 1 && first.is_dir() {
        return crate::commands::convert_dicom::list(first);
    }
    let ending = file_ending(first);
    // The first reader for the ending reads the file once; only if it cannot, the readers are
    // asked in nnU-Net's order which one can (which reads the file again).
    let by_ending = choose_reader_for(&ctx.registries, args.reader.as_deref(), &ending, None)?;
    let start = Instant::now();
    let (entry, (shape, properties, stats)) = match read(&args, by_ending) {
        Ok(result) => (by_ending, result),
        Err(first_error) if args.reader.is_none() => {
            let entry = choose_reader_for(&ctx.registries, None, &ending, Some(first))
                .map_err(|_| first_error)?;
            (entry, read(&args, entry)?)
        }
        Err(e) => return Err(e),
    };
    let seconds = start.elapsed().as_secs_f64();
    println!("reader:    {} [{}]", entry.name, entry.origin);
    println!("shape:     {shape:?} (channels, z, y, x)");
    println!("spacing:   {:?} (z, y, x)", properties.spacing);
    if !properties.origin.is_empty() {
        println!("origin:    {:?}", properties.origin);
    }
    if !properties.direction.is_empty() {
        println!("direction: {:?}", properties.direction);
    }
    for line in stats {
        println!("{line}");
    }
    println!(
        "read in {seconds:.3} s{}",
        if args.files.len() > 1 {
            format!(" ({} files)", args.files.len())
        } else {
            String::new()
        }
    );
    Ok(())
}
