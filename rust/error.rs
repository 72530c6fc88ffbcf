//! The one error type of the core. Every variant maps to a specific Python exception class in the
//! binding layer, so callers can catch precisely what went wrong.

use std::path::PathBuf;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor's element type cannot be stored in an NNEF `.dat` file (or used by an operation).
    #[error("{what}: dtype {dtype} is not supported. {hint}")]
    UnsupportedDtype {
        /// Which tensor or operation refused it.
        what: String,
        /// The dtype as the caller spelled it.
        dtype: String,
        /// What to do instead.
        hint: String,
    },
    /// The payload does not fit the `.dat` u32 size field, or a rank above 8.
    #[error("{what}: {reason}")]
    TooLarge {
        /// Which tensor.
        what: String,
        /// Why it does not fit.
        reason: String,
    },
    /// A shape that the operation cannot accept (e.g. Q4_0 needs a trailing size multiple of 32).
    #[error("{what}: {reason}")]
    Shape {
        /// Which tensor or operation.
        what: String,
        /// What is wrong with the shape and how to fix it.
        reason: String,
    },
    /// A malformed, truncated or inconsistent file (a `.dat` or an archive).
    #[error("{path}: {reason}")]
    Format {
        /// The file that is malformed.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor label or archive member whose path would leave its folder.
    #[error("{what}: path {label:?} is not allowed: {reason}")]
    UnsafePath {
        /// Which file or archive it comes from.
        what: String,
        /// The offending label.
        label: String,
        /// Why it is refused.
        reason: String,
    },
    /// Two tensors would be written at the same path.
    #[error("tensor label {label:?} is given twice: labels must be unique")]
    DuplicateLabel {
        /// The label seen twice.
        label: String,
    },
    /// The output path already exists and overwriting was not asked for.
    #[error("{path} already exists: pass overwrite=True to replace it, or choose another path")]
    OutputExists {
        /// The existing path.
        path: PathBuf,
    },
    /// The folder that should hold the output does not exist.
    #[error("cannot write {path}: its folder {parent} does not exist; create it first")]
    MissingParent {
        /// The output path.
        path: PathBuf,
        /// Its missing parent folder.
        parent: PathBuf,
    },
    /// An operating system error while reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Float values given as Q4_0 values that their blocks do not decode back to.
    #[error(
        "{what}: value {index} (row-major) is not a Q4_0 value: these values were changed since \
         they were quantized (an optimizer step, load_state_dict with other weights); quantize \
         the weight again (fp_to_tract_q4_0_with_min_max_calibration)"
    )]
    NotQ40Values {
        /// Which tensor.
        what: String,
        /// The first value that does not decode back.
        index: usize,
    },
    /// A wrong argument value (unknown tolerance name, bad gzip level, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// tract refused to load or run a model; the message is tract's full error chain.
    #[error("tract: {0}")]
    Tract(String),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Turns a tract (anyhow) error into ours, keeping its whole chain of causes.
    pub fn tract(err: impl Into<anyhow_compat::AnyError>) -> Self {
        Error::Tract(err.into().0)
    }
}

/// A tiny bridge so that tract's `anyhow::Error` converts without naming anyhow ourselves.
pub mod anyhow_compat {
    /// A formatted error chain.
    pub struct AnyError(pub String);

    impl From<tract_nnef::prelude::TractError> for AnyError {
        fn from(e: tract_nnef::prelude::TractError) -> Self {
            AnyError(format!("{e:#}"))
        }
    }
}

/// Result alias of the core.
pub type Result<T> = std::result::Result<T, Error>;
