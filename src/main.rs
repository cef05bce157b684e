use node_agent::cli::{self, Action};
use node_agent::config::{self, Config, Layers};
use std::process::ExitCode;

fn main() -> ExitCode {
    node_agent::sys::memory::limit_arenas();
    node_agent::sys::memory::release_relocations();
    let matches = cli::command().get_matches();
    let inv = cli::parse(&matches);
    let layers = match Layers::load(inv.flags, inv.config_file.as_deref()) {
        Ok(l) => l,
        Err(e) => return config_error(e),
    };
    if let Action::Config { json, markdown } = inv.action {
        print_config(&layers, json, markdown);
        return match Config::from_layers(&layers) {
            Ok(cfg) => {
                for w in &cfg.warnings {
                    eprintln!("node-agent: warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => config_error(e),
        };
    }
    let cfg = match Config::from_layers(&layers) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    // The live view owns the terminal: log lines would tear through it.
    if !matches!(inv.action, Action::Top { once: false }) {
        let export = cfg.log_export.filter(|_| matches!(inv.action, Action::Run));
        node_agent::logging::init(&cfg.log_level, cfg.log_format, export);
        for w in &cfg.warnings {
            tracing::warn!("{w}");
        }
    }
    node_agent::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("node-agent")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("node-agent: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let live_view = matches!(inv.action, Action::Top { once: false });
    let code = runtime.block_on(async move {
        match inv.action {
            Action::Check { json } => node_agent::check::run(cfg, json).await,
            Action::Top { once } => node_agent::top::run(cfg, once).await,
            _ => node_agent::runtime::run(cfg, layers).await,
        }
    });
    if live_view {
        // The live view has restored the terminal; nothing is left to deliver or write: end now
        // rather than tear down samplers that may be inside a slow read.
        std::process::exit(i32::from(code as u8));
    }
    // Do not wait for blocked helper threads (a hung statfs) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code as u8)
}

fn config_error(e: config::ConfigError) -> ExitCode {
    eprintln!("node-agent: configuration error: {e}");
    ExitCode::from(2)
}

fn print_config(layers: &Layers, json: bool, markdown: bool) {
    use std::io::Write;
    let text = if json {
        let rows = config::display::effective(layers);
        serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n"
    } else if markdown {
        config::display::markdown()
    } else {
        config::display::text(layers)
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// tokio's multi-thread scheduler computes a weight with `pow` after every batch of tasks it
/// polls; calling glibc's kept a few hundred kilobytes of libm's pages mapped in the agent. The
/// pure-Rust `libm` crate's `pow` (a port of musl's) answers instead: the linker binds the
/// binary's own calls to this definition. With the console exporter's `log10` gone too, nothing
/// is left for glibc's libm to resolve, and the linker (`--as-needed`) no longer lists it.
#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}
