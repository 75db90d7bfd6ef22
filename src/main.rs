//! The `scimsync` binary: parse, run, map the outcome to an exit code.

use clap::Parser;

fn main() {
    scimsync::alloc::return_freed_memory_soon();
    quiet_broken_pipe();
    let cli = scimsync::cli::Cli::parse();
    // The daemon reports each cycle at info; one-shot commands print their own output.
    let level = match cli.command {
        scimsync::cli::Command::Run => "info",
        _ => "warn",
    };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    // ureq logs whole request URLs (filter values are people's emails) at debug:
    // whatever RUST_LOG says, it speaks only of problems.
    logger
        .filter_module("ureq", log::LevelFilter::Warn)
        .filter_module("rustls", log::LevelFilter::Warn);
    if cli.log_format == scimsync::cli::LogFormat::Json {
        logger.format(|buf, record| {
            use std::io::Write;
            let line = serde_json::json!({
                "time": scimsync::clock::rfc3339(scimsync::clock::now()),
                "level": record.level().as_str(),
                "target": record.target(),
                "message": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        });
    }
    logger.init();
    let code = match scimsync::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scimsync: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// `scimsync logs | head`: when the reader goes away, printing fails with a broken
/// pipe and Rust's `println!` panics. A command whose output nobody reads any more
/// ends quietly instead, with the shell's code for SIGPIPE (128 + 13).
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("Broken pipe") || message.contains("BrokenPipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
