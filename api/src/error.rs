//! The errors of nnunet-rs. Every error names what went wrong and, where a file is involved, which
//! file, so that the CLI can print it as it is.
//!
//! Errors of one domain of the pipeline are that domain's enum ([`ReaderError`],
//! [`DatasetError`], [`PlansError`], [`PluginError`], [`TrainingError`], [`InferenceError`],
//! [`EvaluationError`]), converted into the top-level [`Error`] with `#[from]`, so that a library
//! caller can match on the domain and on what went wrong; the top-level error prints the domain
//! error's message unchanged.

use std::path::{Path, PathBuf};

/// Result with the nnunet-rs [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, phrased for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing an image or label file (the [`Reader`](crate::Reader)s).
    #[error(transparent)]
    Reader(#[from] ReaderError),
    /// The raw dataset: `dataset.json`, its cases and files, dataset folders.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// Plans and planning: the plans file, configurations, planners' settings.
    #[error(transparent)]
    Plans(#[from] PlansError),
    /// Registries and dynamic plugins: unknown or duplicate names, plugins that cannot load.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Training: trainers, networks, losses, augmentations, data loading, checkpoints, folds.
    #[error(transparent)]
    Training(#[from] TrainingError),
    /// Inference: trained models, prediction, export, the cascade, imported and shared models.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// Evaluation, postprocessing, ensembling and model selection.
    #[error(transparent)]
    Evaluation(#[from] EvaluationError),
    /// A path variable (`nnUNet_raw`, …) needed but not set.
    #[error(
        "the environment variable {var} is not set, and no --{flag} was given.\n\
         nnunet needs it to find the {what}. Set it, for example:\n    export {var}=/data/{var}\n\
         or pass --{flag} /data/{var} on the command line."
    )]
    PathNotSet {
        /// The environment variable, e.g. `nnUNet_raw`.
        var: &'static str,
        /// The command-line option that can stand in for it, without the leading `--`.
        flag: &'static str,
        /// What the path is needed to find, for the message.
        what: &'static str,
    },
    /// A file of no one domain (a JSON file, say) that exists but whose content is wrong.
    #[error("{}: {reason}", .path.display())]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        reason: String,
    },
    /// An I/O failure on a named file.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file the operation was on.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Invalid arguments or settings of no one domain (devices, precision, command-line values).
    #[error("{0}")]
    Invalid(String),
}

/// Declares a domain's error enum with its two kinds of problems (a wrong setting or input, and a
/// file whose content is wrong) and the constructors of the top-level [`Error`] for them.
macro_rules! domain_error {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $invalid:ident, $file:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, thiserror::Error)]
        pub enum $name {
            #[doc = concat!("A wrong setting or input of ", $what, ".")]
            #[error("{0}")]
            Invalid(String),
            #[doc = concat!("A file of ", $what, " that exists but whose content is wrong.")]
            #[error("{}: {reason}", .path.display())]
            InvalidFile {
                /// The file.
                path: PathBuf,
                /// What is wrong with its content.
                reason: String,
            },
        }

        impl $name {
            /// The file and what is wrong with it, for [`Self::InvalidFile`].
            fn file_reason(&self) -> Option<(&Path, &str)> {
                match self {
                    $name::InvalidFile { path, reason } => Some((path, reason)),
                    $name::Invalid(_) => None,
                }
            }
        }

        impl Error {
            #[doc = concat!("A wrong setting or input of ", $what, ": [`", stringify!($name), "::Invalid`].")]
            pub fn $invalid(message: impl Into<String>) -> Self {
                Error::$variant($name::Invalid(message.into()))
            }

            #[doc = concat!("A file of ", $what, " whose content is wrong: [`", stringify!($name), "::InvalidFile`].")]
            pub fn $file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
                Error::$variant($name::InvalidFile {
                    path: path.into(),
                    reason: reason.into(),
                })
            }
        }
    };
}

domain_error!(
    /// Errors of reading or writing image and label files.
    ReaderError, Reader, reader, reader_file, "an image reader or writer"
);
domain_error!(
    /// Errors of the raw dataset: `dataset.json`, its cases, dataset folders and conversions.
    DatasetError, Dataset, dataset, dataset_file, "the dataset"
);
domain_error!(
    /// Errors of plans and planning.
    PlansError, Plans, plans, plans_file, "the plans"
);
domain_error!(
    /// Errors of training: trainers, networks, losses, augmentations, data loading, checkpoints.
    TrainingError, Training, training, training_file, "training"
);
domain_error!(
    /// Errors of inference: trained models, prediction, export, the cascade, model import and
    /// sharing.
    InferenceError, Inference, inference, inference_file, "inference"
);
domain_error!(
    /// Errors of evaluation, postprocessing, ensembling and model selection.
    EvaluationError, Evaluation, evaluation, evaluation_file, "evaluation"
);

/// Errors of the registries and of dynamic plugins.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A name given on the command line (or in a file) that no registry knows.
    #[error("unknown {kind} '{name}'{}", suggestion_text(.suggestions))]
    UnknownName {
        /// What was looked up, as the word used in messages (e.g. `trainer`).
        kind: &'static str,
        /// The name that was given.
        name: String,
        /// The nearest known names, best first; may be empty.
        suggestions: Vec<String>,
    },
    /// The same name registered by two origins.
    #[error("{kind} '{name}' is registered twice: by {first} and by {second}")]
    DuplicateName {
        /// The kind of extension, as the word used in messages (e.g. `trainer`).
        kind: &'static str,
        /// The name registered twice.
        name: String,
        /// The origin of the first registration (see [`Origin`](crate::registry::Origin)).
        first: String,
        /// The origin of the second registration.
        second: String,
    },
    /// A dynamic plugin that cannot be loaded, or was refused.
    #[error("plugin {}: {reason}", .path.display())]
    Load {
        /// The plugin's dynamic library.
        path: PathBuf,
        /// Why it could not be loaded or was refused.
        reason: String,
    },
}

fn suggestion_text(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The file and what is wrong with its content, for an error about a file's content of any
    /// domain (so that a caller can word the message around the file name once).
    pub fn file_reason(&self) -> Option<(&Path, &str)> {
        match self {
            Error::InvalidFile { path, reason } => Some((path, reason)),
            Error::Reader(e) => e.file_reason(),
            Error::Dataset(e) => e.file_reason(),
            Error::Plans(e) => e.file_reason(),
            Error::Training(e) => e.file_reason(),
            Error::Inference(e) => e.file_reason(),
            Error::Evaluation(e) => e.file_reason(),
            _ => None,
        }
    }

    /// The message without the file's name where the error is about a file's content (see
    /// [`Error::file_reason`]), else the whole message: for messages that name the file once.
    pub fn reason(&self) -> String {
        match self.file_reason() {
            Some((_, reason)) => reason.to_string(),
            None => self.to_string(),
        }
    }

    /// A file of no one domain whose content is wrong: [`Error::InvalidFile`].
    pub fn invalid_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::InvalidFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_print_their_message_unchanged_and_can_be_matched() {
        let e = Error::training("batch size 0");
        assert_eq!(e.to_string(), "batch size 0");
        assert!(matches!(e, Error::Training(TrainingError::Invalid(_))));
        let e = Error::reader_file("/d/a.nii.gz", "truncated header");
        assert_eq!(e.to_string(), "/d/a.nii.gz: truncated header");
        assert_eq!(
            e.file_reason(),
            Some((Path::new("/d/a.nii.gz"), "truncated header"))
        );
        assert_eq!(e.reason(), "truncated header");
        assert_eq!(Error::training("batch size 0").reason(), "batch size 0");
        assert!(matches!(
            e,
            Error::Reader(ReaderError::InvalidFile { ref path, .. }) if path.ends_with("a.nii.gz")
        ));
        let e: Error = PluginError::UnknownName {
            kind: "trainer",
            name: "nnUNetTrainr".into(),
            suggestions: vec!["nnUNetTrainer".into()],
        }
        .into();
        assert_eq!(
            e.to_string(),
            "unknown trainer 'nnUNetTrainr'; did you mean nnUNetTrainer?"
        );
    }
}
