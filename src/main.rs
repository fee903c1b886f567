//! The `sipline` binary.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use sipline::cli::{self, args::Cli};

fn main() {
    let cli = Cli::parse();
    if let Err(msg) = cli.check() {
        use clap::CommandFactory;
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, msg)
            .exit();
    }
    let level = match cli.verbose {
        0 => "sipline=info",
        1 => "sipline=debug",
        _ => "sipline=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // stderr, or above the phone's prompt while it is up.
        .with_writer(cli::repl::term::LogWriter::make)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipline: cannot start the runtime: {e}");
            std::process::exit(cli::exit::Exit::Internal.code());
        }
    };
    let exit = runtime.block_on(cli::run(cli));
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    std::process::exit(exit.code());
}
