//! `tandem server --help` shows, for every setting, its flag, its environment variable and its
//! default, and for a renamed one its former flag and variable (one definition per setting, as
//! the style guide asks).

use std::path::Path;
use std::time::Duration;

use tandem_server::Settings;
use tandem_testkit::{run_to_exit, tandem_command};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// The help text of one flag: its line and the description lines up to the next flag.
fn flag_help<'a>(help: &'a str, flag: &str) -> Option<String> {
    let lines: Vec<&'a str> = help.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&format!("{flag} ")) || l.trim() == flag)?;
    let rest = lines[start + 1..]
        .iter()
        .take_while(|l| !l.trim_start().starts_with('-'))
        .copied()
        .collect::<Vec<_>>();
    Some(format!("{}\n{}", lines[start], rest.join("\n")))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_setting_shows_its_flag_env_var_and_default() {
    let mut command = tandem_command(tandem());
    command.args(["server", "--help"]);
    let output = run_to_exit(command, Duration::from_secs(20)).await;
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);

    let catalogue = Settings::catalogue();
    assert!(!catalogue.is_empty());
    let mut problems = Vec::new();
    for setting in catalogue {
        let flag = setting.flag();
        let Some(text) = flag_help(&help, &flag) else {
            problems.push(format!("{flag} is not in the help"));
            continue;
        };
        let mut wanted = vec![
            format!("[env: {}", setting.env),
            format!("[default: {}]", setting.default),
        ];
        if let Some(former) = setting.formerly {
            wanted.push(format!("--{}", former.flag));
            wanted.push(format!("[also env: {}]", former.env));
        }
        for want in wanted {
            if !text.contains(&want) {
                problems.push(format!("{flag} does not show {want}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "tandem server --help is missing: {problems:#?}\nhelp was:\n{help}"
    );
}
