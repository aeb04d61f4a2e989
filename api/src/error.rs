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
    Plugin {
        /// The plugin's dynamic library.
        path: PathBuf,
        /// Why it could not be loaded or was refused.
        reason: String,
    },
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
    /// A dataset that cannot be found or is ambiguous.
    #[error("{0}")]
    Dataset(String),
    /// A file that exists but whose content is wrong.
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
