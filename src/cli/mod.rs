//! The `tenure` command line: `sql`, `demo`, `rekey` and `serve`.

mod output;
mod progress;
mod shell;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

pub use output::{Format, print_batches};
pub use shell::Shell;

use crate::config::{Config, Overrides};
use crate::engine::{Engine, PathAccess};
use crate::error::{Error, Result};

/// tenure: customer-lifecycle analytics in SQL.
#[derive(Debug, Parser)]
#[command(name = "tenure", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes, before or after its name.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Data directory (default ./tenure-data; env TENURE_DATA_DIR)
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (default ./tenure.toml when it exists)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Threads per query (DataFusion target partitions; env TENURE_THREADS)
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Memory limit for query execution, e.g. 4GiB; past it queries spill to disk
    #[arg(long, global = true, value_name = "SIZE")]
    pub memory_limit: Option<String>,
    /// Rows per record batch
    #[arg(long, global = true)]
    pub batch_size: Option<usize>,
    /// Where models score and train by default: cpu or cuda:N (a build with --features cuda)
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<String>,
    /// Create the data directory when it does not exist (`demo` always may); without it
    /// `sql` and `serve` open only an existing tenure data directory or an empty one
    #[arg(long, global = true)]
    pub create: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run SQL: an interactive shell, or -c / -f one-shots
    Sql {
        /// SQL to run (repeatable; each may hold several statements)
        // A script may start with `--` (a comment): it is a value, not a flag.
        #[arg(
            short = 'c',
            long = "command",
            value_name = "SQL",
            allow_hyphen_values = true
        )]
        commands: Vec<String>,
        /// File of SQL to run ('-' for standard input)
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        files: Vec<PathBuf>,
        /// How to print rows
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Print how long each statement took
        #[arg(long)]
        timing: bool,
    },
    /// Create the demo e-commerce world as tables in the data directory
    Demo {
        /// Size: 1 is 100,000 customers; 10 about a million
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Random seed; the same seed gives the same world
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Also write every table as a Parquet file under DIR
        #[arg(long, value_name = "DIR")]
        parquet: Option<PathBuf>,
    },
    /// Seal every secret again with a new key (made, owner-only, where the file does not
    /// exist), then point secret_key_file at it; the configured key must still open them
    Rekey {
        /// The new key file (64 hex digits)
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
    /// Serve the data directory over the PostgreSQL protocol
    Serve {
        /// Address to listen on (default 127.0.0.1:5433; env TENURE_LISTEN)
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
    },
}

impl Cli {
    fn config(&self) -> Result<Config> {
        let listen = match &self.command {
            Command::Serve { listen } => listen.clone(),
            _ => None,
        };
        let flags = Overrides {
            data_dir: self.global.data_dir.clone(),
            threads: self.global.threads,
            memory_limit: self.global.memory_limit.clone(),
            batch_size: self.global.batch_size,
            device: self.global.device.clone(),
            listen,
            ..Default::default()
        };
        Config::load(self.global.config.as_deref(), &flags)
    }
}

/// Runs the command line; the caller turns an error into a message and exit code 1.
pub async fn run(cli: Cli) -> Result<()> {
    let config = cli.config()?;
    let create = cli.global.create || matches!(cli.command, Command::Demo { .. });
    crate::datadir::check_before_open(&config.data_dir, create)?;
    match cli.command {
        Command::Sql {
            commands,
            files,
            format,
            timing,
        } => {
            let engine = Engine::open(&config, PathAccess::Unrestricted).await?;
            let result = async {
                let mut shell = Shell::new(&engine, format, timing);
                let mut stdout = std::io::stdout().lock();
                if commands.is_empty() && files.is_empty() {
                    if std::io::stdin().is_terminal() {
                        return shell.interactive().await;
                    }
                    let mut script = String::new();
                    std::io::stdin().read_to_string(&mut script)?;
                    return shell.run_script(&script, &mut stdout).await;
                }
                for command in &commands {
                    shell.run_script(command, &mut stdout).await?;
                }
                for file in &files {
                    let script = if file.as_os_str() == "-" {
                        let mut script = String::new();
                        std::io::stdin().read_to_string(&mut script)?;
                        script
                    } else {
                        std::fs::read_to_string(file).map_err(|e| {
                            Error::invalid(format!("cannot read {}: {e}", file.display()))
                        })?
                    };
                    shell.run_script(&script, &mut stdout).await?;
                }
                Ok(())
            }
            .await;
            // Buffered appends reach the Delta tables before the process ends.
            engine.flush_all().await;
            result
        }
        Command::Demo {
            scale,
            seed,
            parquet,
        } => {
            let engine = Engine::open(&config, PathAccess::Unrestricted).await?;
            let options = crate::demo::DemoOptions { scale, seed };
            let loaded = crate::lifecycle::load_demo(&engine, &options, parquet.as_deref()).await;
            engine.flush_all().await;
            loaded?;
            // The hints name the data directory the way it was given, unless it is the
            // default one the commands find by themselves.
            let dir = match &cli.global.data_dir {
                Some(dir) => format!(" --data-dir {}", shell_word(&dir.display().to_string())),
                None => String::new(),
            };
            println!(
                "\nThe demo world is in {}. Try:\n  \
                 tenure{dir} sql -c \"SELECT count(*) FROM orders\"\n  \
                 tenure{dir} sql -c \"SELECT * FROM rfm ORDER BY monetary DESC LIMIT 10\"\n  \
                 tenure{dir} sql -c \"SELECT * FROM funnel\"\n  \
                 tenure{dir} sql            (interactive; \\d lists the tables)\n  \
                 tenure{dir} serve          (then psql \"host=127.0.0.1 port=5433 user=tenure dbname=tenure\")",
                engine.data_dir().root().display()
            );
            Ok(())
        }
        Command::Rekey { new_key_file } => {
            let engine = Engine::open(&config, PathAccess::Unrestricted).await?;
            let (secrets, tables) = engine.reseal_secrets(&new_key_file).await?;
            println!(
                "Sealed {secrets} secrets and the credentials of {tables} external tables with \
                 the key in {}.\nSet secret_key_file = {:?} in tenure.toml before the next \
                 start; the old key no longer opens them.",
                new_key_file.display(),
                new_key_file.display().to_string()
            );
            Ok(())
        }
        Command::Serve { .. } => {
            let roots = config.effective_allowed_roots();
            let engine = Arc::new(Engine::open(&config, PathAccess::Roots(roots)).await?);
            // Statements run on a runtime of their own, so that a long query never holds up
            // the connections' tasks (accepting, reading, cancelling).
            let cpu = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.threads)
                .thread_name("tenure-exec")
                .thread_stack_size(crate::STATEMENT_STACK_SIZE)
                .enable_all()
                .build()?;
            let options = crate::server::ServerOptions::from_config(&config);
            let result = async {
                let server =
                    crate::server::Server::bind(engine.clone(), &options, cpu.handle().clone())
                        .await?;
                tracing::info!(
                    data_dir = %config.data_dir.display(),
                    "serving; stop with Ctrl-C or SIGTERM"
                );
                server
                    .serve(async {
                        if let Err(e) = wait_for_shutdown().await {
                            tracing::warn!("cannot wait for signals: {e}");
                            std::future::pending::<()>().await;
                        }
                    })
                    .await
            }
            .await;
            engine.flush_all().await;
            // On every way out, errors included: a runtime dropped inside another's async
            // context panics, and the panic would hide the error.
            cpu.shutdown_background();
            tracing::info!("stopped");
            result
        }
    }
}

async fn wait_for_shutdown() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// `word` quoted for a POSIX shell where it needs to be.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}
