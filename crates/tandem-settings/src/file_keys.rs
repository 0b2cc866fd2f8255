use std::collections::BTreeMap;

/// The keys of a config file not read yet, so that what is left over is refused by name.
pub struct FileKeys {
    top: toml::Table,
    sections: BTreeMap<&'static str, toml::Table>,
    /// The settings that are keys of their own at the top of the file.
    top_level_settings: Vec<&'static str>,
}

impl FileKeys {
    /// Parses the file and sets apart the tables of the sections that `file_keys` name.
    pub fn parse(text: &str, file_keys: &[&'static str]) -> Result<FileKeys, String> {
        let mut top: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut sections = BTreeMap::new();
        let top_level_settings = file_keys
            .iter()
            .copied()
            .filter(|key| !key.contains('.'))
            .collect();
        for section in file_keys
            .iter()
            .filter_map(|key| Some(key.split_once('.')?.0))
        {
            if sections.contains_key(section) {
                continue;
            }
            let table = match top.remove(section) {
                None => toml::Table::new(),
                Some(toml::Value::Table(table)) => table,
                Some(other) => {
                    return Err(format!(
                        "`{section}` must be a table (`[{section}]`), not a {}",
                        other.type_str()
                    ))
                }
            };
            sections.insert(section, table);
        }
        Ok(FileKeys {
            top,
            sections,
            top_level_settings,
        })
    }

    /// Takes a setting's value, given at `file_key` or at the top-level `flat_key` of files
    /// written before the sections, with the key it was found at. Both at once is an error.
    pub fn take(
        &mut self,
        file_key: &'static str,
        flat_key: &'static str,
    ) -> Result<Option<(&'static str, toml::Value)>, String> {
        let in_place = match file_key.split_once('.') {
            Some((section, key)) => self
                .sections
                .get_mut(section)
                .and_then(|table| table.remove(key)),
            None => self.top.remove(file_key),
        };
        // For a top-level setting the flat key is its key, already taken above.
        let flat = self.top.remove(flat_key);
        match (in_place, flat) {
            (Some(_), Some(_)) => Err(format!(
                "`{flat_key}` and `{file_key}` are the same setting; give it once, as `{file_key}`"
            )),
            (Some(value), None) => Ok(Some((file_key, value))),
            (None, Some(value)) => Ok(Some((flat_key, value))),
            (None, None) => Ok(None),
        }
    }

    /// Refuses the keys no setting took, naming each with its section.
    pub fn refuse_leftovers(&self) -> Result<(), String> {
        let unknown: Vec<String> = self
            .top
            .keys()
            .map(|key| format!("`{key}`"))
            .chain(self.sections.iter().flat_map(|(section, table)| {
                table
                    .keys()
                    .map(move |key| format!("`{key}` in [{section}]"))
            }))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let tables: Vec<String> = self.sections.keys().map(|s| format!("[{s}]")).collect();
        Err(format!(
            "unknown key {}; the file holds {} and the tables {} (or the top-level keys of older files), as docs/configuration.md lists them",
            unknown.join(", unknown key "),
            self.top_level_settings.join(", "),
            tables.join(", ")
        ))
    }
}
