//! The data folder's format version, kept in `data_dir/FORMAT`, so that a server never misreads
//! a folder that a newer release wrote: it refuses it with a message instead.

use std::path::Path;

/// The format of the Raft log, the state database and the snapshots this build writes.
pub const DATA_FORMAT: u32 = 1;

const MARKER_FILE: &str = "FORMAT";
const MARKER_PREFIX: &str = "tandem data format ";

/// What a folder's marker says: `Ok(true)` when the marker must be written (a new folder, or one
/// from before markers existed, which is format 1), `Ok(false)` when it is this format.
pub fn check_marker(marker: Option<&str>) -> Result<bool, String> {
    let Some(text) = marker else {
        return Ok(true);
    };
    let version = text
        .trim()
        .strip_prefix(MARKER_PREFIX)
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| {
            format!("its {MARKER_FILE} file ({text:?}) is not a Tandem format marker")
        })?;
    match version {
        DATA_FORMAT => Ok(false),
        newer if newer > DATA_FORMAT => Err(format!(
            "it was written by a newer release (data format {newer}; this one reads format {DATA_FORMAT}): run that release, or restore a backup into an empty folder"
        )),
        older => Err(format!(
            "it holds data format {older}, which this release cannot read (it reads format {DATA_FORMAT}): upgrade through the releases in between, or restore a backup into an empty folder"
        )),
    }
}

/// Checks `data_dir`'s marker and writes it when missing; an error says what is wrong and what
/// to do.
pub fn check_folder(data_dir: &Path) -> Result<(), String> {
    let path = data_dir.join(MARKER_FILE);
    let marker = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let refuse = |why: String| format!("data folder {}: {why}", data_dir.display());
    if check_marker(marker.as_deref()).map_err(refuse)? {
        std::fs::write(&path, format!("{MARKER_PREFIX}{DATA_FORMAT}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_of_another_format_is_refused_and_a_new_one_marked() {
        assert_eq!(check_marker(None), Ok(true));
        assert_eq!(check_marker(Some("tandem data format 1\n")), Ok(false));
        let newer = check_marker(Some("tandem data format 2")).unwrap_err();
        assert!(newer.contains("newer release (data format 2"), "{newer}");
        assert!(check_marker(Some("tandem data format 0"))
            .unwrap_err()
            .contains("cannot read"));
        assert!(check_marker(Some("something else"))
            .unwrap_err()
            .contains("not a Tandem format marker"));
    }

    #[test]
    fn the_marker_is_written_once_and_then_read() {
        let dir = tempfile::tempdir().unwrap();
        check_folder(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap();
        assert_eq!(text, "tandem data format 1\n");
        check_folder(dir.path()).unwrap();
        std::fs::write(dir.path().join(MARKER_FILE), "tandem data format 9\n").unwrap();
        let refused = check_folder(dir.path()).unwrap_err();
        assert!(refused.starts_with("data folder "), "{refused}");
    }
}
