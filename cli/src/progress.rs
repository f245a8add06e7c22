//! Progress on stderr while copying: a live line on a terminal, a plain line every few seconds
//! otherwise (CI logs).

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_copy::CopyStats;
use tokio::sync::oneshot;

pub(crate) struct Progress {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub(crate) fn start(stats: Arc<CopyStats>, total_edges: u64, live: bool) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let period = if live { Duration::from_millis(250) } else { Duration::from_secs(5) };
            let mut ticker = tokio::time::interval(period);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = &mut stopped => break,
                }
                let line = line(&stats, total_edges, started.elapsed());
                let mut stderr = std::io::stderr().lock();
                let _ = if live {
                    write!(stderr, "\r\x1b[2K{line}")
                } else {
                    writeln!(stderr, "ferry: progress: {line}")
                };
                let _ = stderr.flush();
            }
            if live {
                let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
            }
        });
        Progress { stop, task }
    }

    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn line(stats: &CopyStats, total_edges: u64, elapsed: Duration) -> String {
    let s = stats.snapshot();
    let rate = s.bytes as f64 / elapsed.as_secs_f64().max(0.001);
    format!(
        "edges {}/{total_edges} ({} failed)  {} streamed  {}/s  blobs {} streamed, {} mounted, {} present",
        s.edges_done + s.edges_failed,
        s.edges_failed,
        crate::output::bytes(s.bytes as f64),
        crate::output::bytes(rate),
        s.blobs_streamed,
        s.blobs_mounted,
        s.blobs_present
    )
}
