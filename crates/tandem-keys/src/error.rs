/// What went wrong with a key: generating it, reading or writing its file, or using it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate a {algorithm} signing key")]
    Generate { algorithm: &'static str },
    #[error("private key file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("{0}")]
    Invalid(String),
}

impl KeyError {
    pub(crate) fn file(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        KeyError::File {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}
