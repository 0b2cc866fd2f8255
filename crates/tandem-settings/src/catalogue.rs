/// The spelling a setting had before it was renamed; all three are still accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormerSpelling {
    /// Its top-level key in a config file.
    pub key: &'static str,
    /// Its flag, without the leading `--`.
    pub flag: &'static str,
    pub env: &'static str,
}

/// One setting as declared: its spellings, its default as users are shown it, its help line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The field of the settings struct; the flag is this name with dashes.
    pub name: &'static str,
    /// Its key in the config file: `section.key`, or a top-level key.
    pub file_key: &'static str,
    pub env: &'static str,
    pub formerly: Option<FormerSpelling>,
    pub default: &'static str,
    pub help: String,
}

impl Setting {
    pub fn flag(&self) -> String {
        format!("--{}", self.name.replace('_', "-"))
    }

    /// The top-level key that config files written before the sections give this setting.
    pub fn flat_key(&self) -> &'static str {
        self.formerly.map_or(self.name, |former| former.key)
    }
}
