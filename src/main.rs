use std::process::ExitCode;

use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    let config = lb::daemon::Config::parse();
    if config.man {
        let man = clap_mangen::Man::new(lb::daemon::Config::command());
        return match man.render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lb: error: cannot write the man page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LB_LOG").unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match lb::daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb: error: {e}");
            ExitCode::FAILURE
        }
    }
}
