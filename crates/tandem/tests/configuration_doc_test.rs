//! Keeps docs/configuration.md honest: every setting of the server and of the agent has a row
//! in a settings table with its TOML key, its top-level key, its flags, its environment variables
//! and the default the code uses, and the tables describe no setting that neither has.

use std::sync::OnceLock;

use tandem_agent::AgentSettings;
use tandem_server::config::Setting;
use tandem_server::Settings;

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");

fn doc() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        std::fs::read_to_string(DOC_PATH).unwrap_or_else(|e| panic!("cannot read {DOC_PATH}: {e}"))
    })
}

/// The cells of every Markdown table row in the doc, trimmed.
fn table_rows() -> Vec<Vec<&'static str>> {
    doc()
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('|') && line.ends_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The words in backticks in a cell: `` `--secret-cluster`, `--secret-raft` `` gives both flags.
fn quoted(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Rows of the settings tables:
/// `| TOML key | Older files | Flag | Environment | Default | Meaning |`, told apart from other
/// tables by a fourth cell that names a `TANDEM_` variable.
fn setting_rows() -> Vec<Vec<&'static str>> {
    table_rows()
        .into_iter()
        .filter(|cells| cells.len() >= 6 && cells[3].starts_with("`TANDEM_"))
        .collect()
}

/// Every setting of `tandem server` and `tandem agent`.
fn catalogue() -> Vec<Setting> {
    Settings::catalogue()
        .into_iter()
        .chain(AgentSettings::catalogue())
        .collect()
}

/// What a setting's row must hold, cell by cell (without the meaning).
fn expected_cells(setting: &Setting) -> [(&'static str, Vec<String>); 4] {
    let former = setting.formerly;
    [
        ("TOML key", vec![setting.file_key.to_string()]),
        ("older files", vec![setting.flat_key().to_string()]),
        (
            "flag",
            std::iter::once(setting.flag())
                .chain(former.map(|f| format!("--{}", f.flag)))
                .collect(),
        ),
        (
            "environment",
            std::iter::once(setting.env.to_string())
                .chain(former.map(|f| f.env.to_string()))
                .collect(),
        ),
    ]
}

#[test]
fn every_setting_is_documented_with_its_spellings_and_default() {
    let rows = setting_rows();
    let mut problems = Vec::new();
    for setting in catalogue() {
        let key = setting.file_key;
        let Some(row) = rows.iter().find(|cells| quoted(cells[0]) == [key]) else {
            problems.push(format!(
                "{key}: no settings table has a row `| `{key}` | ... |`"
            ));
            continue;
        };
        for ((what, want), cell) in expected_cells(&setting).iter().zip(&row[..4]) {
            if quoted(cell) != *want {
                problems.push(format!(
                    "{key}: the {what} column says {cell:?}, the code says {want:?}"
                ));
            }
        }
        if row[4].trim_matches('`') != setting.default {
            problems.push(format!(
                "{key}: the default column says {:?}, the code says {:?}",
                row[4], setting.default
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{DOC_PATH} is out of date:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_settings_tables_list_no_unknown_setting() {
    let known: Vec<&str> = catalogue()
        .into_iter()
        .map(|setting| setting.file_key)
        .collect();
    let unknown: Vec<&str> = setting_rows()
        .iter()
        .map(|cells| cells[0])
        .filter(|cell| !quoted(cell).iter().any(|key| known.contains(key)))
        .collect();
    assert!(
        unknown.is_empty(),
        "{DOC_PATH} documents settings neither the server nor the agent has: {unknown:?}"
    );
}
