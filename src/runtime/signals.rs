//! SIGTERM and SIGINT, counted. The first asks for an orderly stop (finish the sample, deliver
//! while the collector answers, spool the rest); the second asks to stop at once (the queue is
//! still written to the local spool, which takes milliseconds); a third ends the process on the
//! spot, for the case where even that local write hangs (a dead disk).

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// The stream of stop requests.
pub(crate) struct Signals {
    rx: mpsc::UnboundedReceiver<&'static str>,
}

/// The handlers could not be installed (the runtime has no signal driver, or the OS refused).
#[derive(Debug, thiserror::Error)]
#[error("cannot install the SIGTERM/SIGINT handlers: {0}")]
pub(crate) struct SignalError(#[from] std::io::Error);

impl Signals {
    /// Installs the handlers and starts counting; must be called inside the Tokio runtime.
    pub(crate) fn install() -> Result<Signals, SignalError> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut count = 0u32;
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                count += 1;
                if count >= 3 {
                    tracing::error!(
                        "{name} a third time: exiting now without writing the queue to the spool"
                    );
                    std::process::exit(130);
                }
                if tx.send(name).is_err() {
                    return;
                }
            }
        });
        Ok(Signals { rx })
    }

    /// The name of the next signal (`SIGTERM` or `SIGINT`).
    pub(crate) async fn next(&mut self) -> &'static str {
        match self.rx.recv().await {
            Some(name) => name,
            // The counting task ended (the runtime is shutting down): no more signals.
            None => std::future::pending().await,
        }
    }
}
