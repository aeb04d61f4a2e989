//! `nnunet convert-dicom -i DIR -o OUT`: every DICOM image series under `DIR` (any folder
//! structure; files that are not DICOM images are skipped) as `OUT/<series>.nii.gz` with a JSON
//! side file `OUT/<series>.json` (series UID, modality, description, …). Also the DICOM parts of
//! `nnunet info DIR` (list the series), `nnunet verify --dicom DIR` and
//! `nnunet predict -i DIR --dicom`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nnunet_core::Reader;
use nnunet_inference::predictor::Predictor;
use nnunet_plugins::readers::dicom::{
    Found, Series, convert_series, find_series, read_series, series_layout, sidecar,
};
use nnunet_plugins::readers::simpleitk::SimpleItkIO;

use crate::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Folder with DICOM files (searched at any depth).
    #[arg(short = 'i', value_name = "DIR")]
    input: PathBuf,
    /// Output folder (created if needed): SERIES.nii.gz and SERIES.json per series.
    #[arg(short = 'o', value_name = "DIR")]
    output: PathBuf,
}

/// The series under `dir`, with a note on stderr about the files skipped; no series is an error.
pub(crate) fn series_under(dir: &Path) -> anyhow::Result<Found> {
    let found = find_series(dir)?;
    if !found.skipped.is_empty() {
        eprintln!(
            "{}: skipped {} file(s) that are not DICOM images{}",
            dir.display(),
            found.skipped.len(),
            found
                .skipped
                .first()
                .map(|(f, why)| format!(", e.g. {}: {why}", f.display()))
                .unwrap_or_default()
        );
    }
    if found.series.is_empty() {
        anyhow::bail!("{}: no DICOM image series found", dir.display());
    }
    Ok(found)
}

/// Runs `f` on every series with a progress line and ETA; failures are printed and counted.
fn each_series(
    series: &[Series],
    verb: &str,
    mut f: impl FnMut(&Series) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut failed = 0;
    for (i, s) in series.iter().enumerate() {
        match f(s) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e:#}");
            }
        }
        let done = i + 1;
        let left = start.elapsed().as_secs_f64() / done as f64 * (series.len() - done) as f64;
        eprintln!(
            "{verb} {done}/{} series, about {left:.0} s left",
            series.len()
        );
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} series could not be {verb} (listed above)",
            series.len()
        );
    }
    Ok(())
}

/// Runs `nnunet convert-dicom`.
pub(crate) fn run(_ctx: &Context, args: Args) -> anyhow::Result<()> {
    let found = series_under(&args.input)?;
    each_series(&found.series, "converted", |s| {
        let file = convert_series(s, &args.output)?;
        Ok(format!(
            "{}: {} {} slice(s) '{}' -> {}",
            s.name,
            s.modality,
            s.files.len(),
            s.description,
            file.display()
        ))
    })
}

/// `nnunet info DIR`: one line per series with its size and spacing, or why it is not a volume.
pub(crate) fn list(dir: &Path) -> anyhow::Result<()> {
    let found = series_under(dir)?;
    println!(
        "{} DICOM image series in {}",
        found.series.len(),
        dir.display()
    );
    for s in &found.series {
        let geometry = match series_layout(s) {
            Ok(l) => format!(
                "size {:?} (x, y, z), spacing {:?} (z, y, x)",
                l.size, l.properties.spacing
            ),
            Err(e) => format!("not a regular volume: {e}"),
        };
        println!(
            "{}: {} '{}', {} file(s), {geometry}, series UID {}",
            s.name,
            s.modality,
            s.description,
            s.files.len(),
            s.uid
        );
    }
    Ok(())
}

/// `nnunet verify --dicom DIR`: reads every series completely; an error lists the failures.
pub(crate) fn verify(dir: &Path) -> anyhow::Result<()> {
    let found = series_under(dir)?;
    each_series(&found.series, "checked", |s| {
        let image = read_series(s)?;
        Ok(format!(
            "{}: OK, shape {:?} (c, z, y, x)",
            s.name,
            image.data.shape()
        ))
    })?;
    println!(
        "{}: all {} series are OK",
        dir.display(),
        found.series.len()
    );
    Ok(())
}

/// `nnunet predict -i DIR --dicom`: predicts every series under `input` into
/// `output/<series>.nii.gz` (in the series' geometry) with its JSON side file.
pub(crate) fn predict(predictor: &Predictor, input: &Path, output: &Path) -> anyhow::Result<()> {
    if predictor.input_channels() != 1 {
        anyhow::bail!(
            "the model takes {} channels; a DICOM series gives one (convert the series with \
             `nnunet convert-dicom` and name the channel files CASE_XXXX yourself)",
            predictor.input_channels()
        );
    }
    let found = series_under(input)?;
    std::fs::create_dir_all(output).map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
    each_series(&found.series, "predicted", |s| {
        let image = read_series(s)?;
        let prediction = predictor.predict_image(image, false)?;
        let seg = &prediction.segmentation;
        let file = output.join(format!("{}.nii.gz", s.name));
        let labels = seg.data.index_axis(ndarray::Axis(0), 0);
        SimpleItkIO.write_segmentation(labels, &file, &seg.properties)?;
        let json_file = output.join(format!("{}.json", s.name));
        let text = serde_json::to_string_pretty(&sidecar(s))?;
        std::fs::write(&json_file, text + "\n")
            .map_err(|e| anyhow::anyhow!("{}: {e}", json_file.display()))?;
        Ok(format!("{}: {}", s.name, file.display()))
    })
}
