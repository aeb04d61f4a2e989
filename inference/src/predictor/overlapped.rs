//! [`Predictor::predict_from_files`]: reading, predicting and writing cases at the same time, on
//! three threads joined by rendezvous channels (see the module documentation of
//! [`predictor`](super)).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use ndarray::Array4;

use super::pipeline::CasePipeline;
use super::{CaseInput, FileOutputOptions, Predictor};
use nnunet_core::error::{Error, Result};
use nnunet_preprocessing::PreprocessedCase;
use nnunet_preprocessing::storage::CaseProperties;

/// A case handed from the reading thread to the network: its index and the preprocessed case.
type ReadCase = (usize, Result<PreprocessedCase>);

/// A case handed from the network to the writing thread: its index, logits and properties.
type PredictedCase = (usize, Array4<f32>, CaseProperties);

impl Predictor {
    /// Predicts `cases` and writes each one's segmentation as `<output_truncated><file_ending>`
    /// in the input's geometry (and, with `save_probabilities`, `<output_truncated>.npz` and
    /// `.json`), reading the next case and writing the previous one while the network works (see
    /// the module documentation). `on_written(case, segmentation_file)` is called, from the
    /// writing thread, after each case. The first error stops the run; the cases written before
    /// it stay. Returns the segmentation files in case order.
    pub fn predict_from_files(
        &self,
        cases: &[CaseInput],
        options: &FileOutputOptions,
        on_written: &(dyn Fn(&CaseInput, &Path) + Sync),
    ) -> Result<Vec<PathBuf>> {
        let pipeline = &self.pipeline;
        std::thread::scope(|scope| {
            // Rendezvous channels: a stage hands a case on only when the next stage takes it.
            let (pre_tx, pre_rx) = sync_channel::<ReadCase>(0);
            let reading = spawn_reading(scope, pipeline, cases, pre_tx)?;
            let (out_tx, out_rx) = sync_channel::<PredictedCase>(0);
            let writing = spawn_writing(scope, pipeline, cases, options, on_written, out_rx)?;
            let mut error = self.predict_received(pre_rx, out_tx);
            let written = writing
                .join()
                .unwrap_or_else(|_| Err(Error::inference("the writing thread panicked")));
            if reading.join().is_err() && error.is_none() {
                error = Some(Error::inference("the reading thread panicked"));
            }
            match (error, written) {
                (Some(e), _) | (None, Err(e)) => Err(e),
                (None, Ok(written)) if written.len() == cases.len() => Ok(written),
                (None, Ok(written)) => Err(Error::inference(format!(
                    "only {} of {} cases were predicted",
                    written.len(),
                    cases.len()
                ))),
            }
        })
    }

    /// Predicts every case that comes from `read` and hands its logits to `predicted`, until
    /// either channel closes; returns the first reading or prediction error. Both channels are
    /// closed on return, which stops the other threads.
    fn predict_received(
        &self,
        read: Receiver<ReadCase>,
        predicted: SyncSender<PredictedCase>,
    ) -> Option<Error> {
        for (i, result) in read.iter() {
            let outcome = result.and_then(|case| {
                let logits = self.predict_logits(case.data.view(), &|_, _| {})?;
                Ok((logits, case.properties))
            });
            match outcome {
                Ok((logits, properties)) => {
                    if predicted.send((i, logits, properties)).is_err() {
                        // The writer stopped on an error; it is reported by the caller.
                        break;
                    }
                }
                Err(e) => return Some(e),
            }
        }
        None
    }
}

/// Starts the thread that reads and preprocesses `cases` in order and sends them to `read`,
/// stopping after the first error or when the receiver is gone.
fn spawn_reading<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    pipeline: &'env CasePipeline,
    cases: &'env [CaseInput],
    read: SyncSender<ReadCase>,
) -> Result<ScopedJoinHandle<'scope, ()>> {
    std::thread::Builder::new()
        .name("predict-read".into())
        .spawn_scoped(scope, move || {
            for (i, case) in cases.iter().enumerate() {
                let result = pipeline.read_and_preprocess(case);
                let failed = result.is_err();
                if read.send((i, result)).is_err() || failed {
                    break;
                }
            }
        })
        .map_err(|e| Error::inference(format!("cannot start a reading thread: {e}")))
}

/// Starts the thread that exports and writes every case that comes from `predicted`, calling
/// `on_written` after each; it returns the segmentation files or the first error.
fn spawn_writing<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    pipeline: &'env CasePipeline,
    cases: &'env [CaseInput],
    options: &'env FileOutputOptions,
    on_written: &'env (dyn Fn(&CaseInput, &Path) + Sync),
    predicted: Receiver<PredictedCase>,
) -> Result<ScopedJoinHandle<'scope, Result<Vec<PathBuf>>>> {
    std::thread::Builder::new()
        .name("predict-write".into())
        .spawn_scoped(scope, move || -> Result<Vec<PathBuf>> {
            let mut written = Vec::with_capacity(cases.len());
            for (i, logits, properties) in predicted {
                let case = &cases[i];
                let mut exported =
                    pipeline.export(logits.view(), &properties, options.save_probabilities)?;
                drop(logits);
                pipeline.apply_roi(&mut exported, case)?;
                let path =
                    pipeline.write(&exported, &properties, &case.output_truncated, options)?;
                on_written(case, &path);
                written.push(path);
            }
            Ok(written)
        })
        .map_err(|e| Error::inference(format!("cannot start a writing thread: {e}")))
}
