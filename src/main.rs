//! The `scimsync` binary: parse, run, map the outcome to an exit code.

use clap::Parser;

fn main() {
    let cli = scimsync::cli::Cli::parse();
    // The daemon reports each cycle at info; one-shot commands print their own output.
    let level = match cli.command {
        scimsync::cli::Command::Run => "info",
        _ => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let code = match scimsync::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scimsync: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
