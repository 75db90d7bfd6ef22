//! The `scimsync` binary: parse, run, map the outcome to an exit code.

use clap::Parser;

fn main() {
    let cli = scimsync::cli::Cli::parse();
    // The daemon reports each cycle at info; one-shot commands print their own output.
    let level = match cli.command {
        scimsync::cli::Command::Run => "info",
        _ => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        // ureq logs whole request URLs (filter values are people's emails) at debug:
        // whatever RUST_LOG says, it speaks only of problems.
        .filter_module("ureq", log::LevelFilter::Warn)
        .filter_module("rustls", log::LevelFilter::Warn)
        .init();
    let code = match scimsync::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scimsync: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
