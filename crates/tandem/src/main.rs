//! `tandem`: the server, and a command line for its API.
#![forbid(unsafe_code)]

mod agents_cli;
mod auth_cli;
mod cli;
mod dev_cli;
mod mesh_cli;
mod progress;
mod status_cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli::run(args))
}
