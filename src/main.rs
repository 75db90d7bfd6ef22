//! The `scimsync` binary: parse, run, map the outcome to an exit code.

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = scimsync::cli::Cli::parse();
    let code = match scimsync::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scimsync: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
