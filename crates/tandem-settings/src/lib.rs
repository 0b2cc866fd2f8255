//! One way to declare settings. A program lists each of its settings once in [`settings!`] —
//! type, default, help line, environment variable, key in the config file, former spellings —
//! and from that one declaration come the command-line flag, the variable, the TOML key, the
//! merged settings and a catalogue for docs and tests. A flag or variable beats the file, the
//! file beats the default.
//!
//! Crates that declare settings depend on `clap` themselves: its derive names `clap` directly.
#![forbid(unsafe_code)]

mod catalogue;
mod env;
mod file_keys;
mod macros;
mod read;
mod size;
mod span;

pub use catalogue::{FormerSpelling, Setting};
pub use env::given_or_former_env;
pub use file_keys::FileKeys;
pub use read::{AsWritten, Listed, MillisIfBare, ReadSetting};
pub use size::ByteSize;
pub use span::Span;
/// The config file's value type, as [`ReadSetting::file`] takes it.
pub use toml::Value as FileValue;

/// A setting that makes start-up impossible; the process exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Trims text settings and unsets the blank ones: an empty value counts as not given
/// (`TANDEM_SECRET_API=` in an environment file), and values read from files and environments
/// often end in a newline.
pub fn unset_blanks<'a>(texts: impl IntoIterator<Item = &'a mut Option<String>>) {
    for text in texts {
        *text = text
            .take()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
    }
}
