//! Keeps docs/configuration.md honest: every server setting has a row in its settings table with
//! the TOML key, the flag, the environment variable and the default the code uses, and the table
//! describes no setting that the server does not have.

use std::sync::OnceLock;

use tandem_server::Settings;

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");

fn doc() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        std::fs::read_to_string(DOC_PATH).unwrap_or_else(|e| panic!("cannot read {DOC_PATH}: {e}"))
    })
}

/// The flag clap derives from a setting's name.
fn flag(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
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

/// A cell without the backticks around it.
fn bare(cell: &str) -> &str {
    cell.trim_matches('`')
}

/// Rows of the settings table: `| TOML key | Flag | Environment | Default | Meaning |`, told
/// apart from other tables by a first cell that is a key in backticks and a third that is a
/// `TANDEM_` variable.
fn setting_rows() -> Vec<Vec<&'static str>> {
    table_rows()
        .into_iter()
        .filter(|cells| {
            cells.len() >= 5
                && cells[0].starts_with('`')
                && !cells[0].starts_with("`--")
                && bare(cells[2]).starts_with("TANDEM_")
        })
        .collect()
}

#[test]
fn every_setting_is_documented_with_its_spellings_and_default() {
    let rows = setting_rows();
    let mut problems = Vec::new();
    for (key, env, default, _help) in Settings::catalogue() {
        for (what, text) in [
            ("TOML key", key.to_string()),
            ("environment variable", env.to_string()),
            ("flag", flag(key)),
            ("default", default.to_string()),
        ] {
            if !doc().contains(&text) {
                problems.push(format!("{key}: the {what} {text:?} is not mentioned"));
            }
        }
        let Some(row) = rows.iter().find(|cells| bare(cells[0]) == key) else {
            problems.push(format!(
                "{key}: the settings table has no row `| `{key}` | ... |`"
            ));
            continue;
        };
        let expected = [
            ("flag", flag(key)),
            ("environment variable", env.to_string()),
        ];
        for ((what, want), cell) in expected.iter().zip([row[1], row[2]]) {
            if bare(cell) != want {
                problems.push(format!(
                    "{key}: the {what} column says {cell:?}, the code says {want:?}"
                ));
            }
        }
        if bare(row[3]) != default {
            problems.push(format!(
                "{key}: the default column says {:?}, the code says {default:?}",
                row[3]
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
fn the_settings_table_lists_no_unknown_setting() {
    let known: Vec<&str> = Settings::catalogue()
        .into_iter()
        .map(|(key, ..)| key)
        .collect();
    let unknown: Vec<&str> = setting_rows()
        .iter()
        .map(|cells| bare(cells[0]))
        .filter(|key| !known.contains(key))
        .collect();
    assert!(
        unknown.is_empty(),
        "{DOC_PATH} documents settings the server does not have: {unknown:?}"
    );
}
