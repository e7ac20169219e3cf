use clap::Parser;
use tracing_subscriber::EnvFilter;

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
        .init();
    // Extraction runs on blocking threads; parsers get room to breathe.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 << 20)
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(cli.run()),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
