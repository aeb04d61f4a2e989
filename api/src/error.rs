//! The one error type of nnunet-rs. Every variant names what went wrong and, where a file is
//! involved, which file, so that the CLI can print it as it is.

use std::path::PathBuf;

/// Result with the nnunet-rs [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, phrased for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name given on the command line (or in a file) that no registry knows.
    #[error("unknown {kind} '{name}'{}", suggestion_text(.suggestions))]
    UnknownName {
        kind: &'static str,
        name: String,
        suggestions: Vec<String>,
    },
    /// The same name registered by two origins.
    #[error("{kind} '{name}' is registered twice: by {first} and by {second}")]
    DuplicateName {
        kind: &'static str,
        name: String,
        first: String,
        second: String,
    },
    /// A dynamic plugin that cannot be loaded, or was refused.
    #[error("plugin {}: {reason}", .path.display())]
    Plugin { path: PathBuf, reason: String },
    /// A path variable (`nnUNet_raw`, …) needed but not set.
    #[error(
        "the environment variable {var} is not set, and no --{flag} was given.\n\
         nnunet needs it to find the {what}. Set it, for example:\n    export {var}=/data/{var}\n\
         or pass --{flag} /data/{var} on the command line."
    )]
    PathNotSet {
        var: &'static str,
        flag: &'static str,
        what: &'static str,
    },
    /// A dataset that cannot be found or is ambiguous.
    #[error("{0}")]
    Dataset(String),
    /// A file that exists but whose content is wrong.
    #[error("{}: {reason}", .path.display())]
    InvalidFile { path: PathBuf, reason: String },
    /// An I/O failure on a named file.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Invalid arguments or settings.
    #[error("{0}")]
    Invalid(String),
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

    /// A file whose content is wrong.
    pub fn invalid_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::InvalidFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
