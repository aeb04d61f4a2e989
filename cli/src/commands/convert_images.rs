//! `nnunet convert-images -i DIR -o imagesTs [--grayscale | --rgb]`: new images of any naming
//! (PNG, JPEG, BMP, TIFF; colour or not) into a folder `nnunet predict` reads: `CASE_0000.png`
//! per image, the case named after the file (or, with `--image-name`, after its case folder).

use std::path::PathBuf;

use nnunet_plugins::conversion::folder::{Colour, convert_images};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Folder of images (or, with --image-name, of case folders).
    #[arg(short = 'i', long = "input", value_name = "DIR")]
    input: PathBuf,
    /// Output folder: CASE_0000.png per image (created if needed).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: PathBuf,
    /// Take DIR/<case>/<NAME> as the image of each case folder.
    #[arg(long, value_name = "NAME")]
    image_name: Option<String>,
    /// Store every image as one gray channel (for a model trained on gray images).
    #[arg(long, conflicts_with = "rgb")]
    grayscale: bool,
    /// Store every image as three channels R, G, B (for a model trained on colour images).
    #[arg(long)]
    rgb: bool,
    /// Replace converted images already in the output folder.
    #[arg(long)]
    overwrite: bool,
}

/// Runs `nnunet convert-images`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let colour = match (args.grayscale, args.rgb) {
        (true, _) => Colour::Gray,
        (_, true) => Colour::Rgb,
        _ => Colour::Keep,
    };
    let report = convert_images(
        &args.input,
        args.image_name.as_deref(),
        &args.output,
        colour,
        args.overwrite,
    )?;
    println!(
        "wrote {} image(s) into {} ({} colour, {} gray); predict them with `nnunet predict -i {} \
         -o OUT -d DATASET -c CONFIGURATION`",
        report.images,
        args.output.display(),
        report.colour,
        report.images - report.colour,
        args.output.display()
    );
    Ok(())
}
