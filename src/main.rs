use clap::Parser;
use tracing_subscriber::EnvFilter;

const COMMAND_STACK_BYTES: usize = 256 << 20;
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn main() -> std::process::ExitCode {
    let cli = docstream::cli::Cli::parse();
    // A lost commit race is routine with concurrent writers (the lake
    // catches up and commits again), not the warning deltalake logs.
    let default_level = match cli.verbose {
        0 => "warn,deltalake_core::kernel::transaction=off",
        1 => "warn,deltalake_core::kernel::transaction=off,docstream=info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // At debug level, what each traced step took.
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .init();
    if let Some(worker) = cli.as_extract_worker() {
        return exit_code(worker.run());
    }
    // Extraction runs on blocking threads; parsers get room to breathe.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 << 20)
        .build();
    // The command runs on a thread with a large stack: planning a deeply
    // nested expression (an 8,000-term sum) recurses once per level.
    let result = match runtime {
        Ok(rt) => std::thread::Builder::new()
            .name("docstream".into())
            .stack_size(COMMAND_STACK_BYTES)
            .spawn(move || {
                let result = rt.block_on(cli.run());
                // Dropping the runtime would wait for extractions that timed
                // out and still run on blocking threads; the command is done.
                rt.shutdown_timeout(SHUTDOWN_GRACE);
                result
            })
            .map_err(anyhow::Error::from)
            .and_then(|t| {
                t.join().unwrap_or_else(|_| {
                    Err(anyhow::anyhow!("docstream crashed; please report this"))
                })
            }),
        Err(e) => Err(e.into()),
    };
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
