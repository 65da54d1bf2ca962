//! The `tenure` binary: parses the command line and reports errors.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = tenure::cli::Cli::parse();
    if matches!(cli.command, tenure::cli::Command::Serve { .. }) {
        tenure::release_freed_memory_promptly();
    }
    // delta-rs warns at every write of a nanosecond time stamp that it keeps microseconds,
    // which is what PostgreSQL keeps too, and at every MERGE that a metric of its own is
    // missing: not news to a user.
    const QUIET: &str = "deltalake_core::kernel::schema::cast=error,\
                         deltalake_core::operations::merge=error";
    let default_level = match cli.command {
        // Our own progress at info; the storage libraries are chatty below warn.
        tenure::cli::Command::Serve { .. } => format!("warn,tenure=info,{QUIET}"),
        _ => format!("warn,{QUIET}"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // A panic is caught where it can be (a connection's task, a decoder) and the server
    // goes on; it is logged like everything else, with the default report (and backtrace)
    // only when RUST_BACKTRACE asks for it.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic: {info}");
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            default_hook(info);
        }
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(tenure::STATEMENT_STACK_SIZE)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tenure::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ERROR: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
