//! Wake-ups: telling the dispatcher that work may have become runnable (a ticket added or moved
//! to todo, a question answered, a run ended) so that it runs a pass at once instead of at the
//! next reconcile. Best effort by design: the periodic reconcile is the fallback, so a lost
//! wake-up costs at most one reconcile interval.
//!
//! The use cases wake through the `Waker` they are given: in the server's own process the
//! `WakeSignal` the server waits on; in another process on the same host the instance's wake
//! socket (`SocketWaker`), whose datagrams the server's `listen` turns into the same signal. On a
//! PostgreSQL store, shared by servers on several nodes, the store's `Notifier` wakes them all
//! (`NOTIFY`), and each server's `listen_postgres` turns the notifications into its signal.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Notify;

/// Something that wakes the dispatcher.
pub trait Waker: Send + Sync {
    fn wake(&self);
}

/// The signal the server's loop waits on; wakes it from within the process.
#[derive(Clone, Debug, Default)]
pub struct WakeSignal(Arc<Notify>);

impl WakeSignal {
    pub fn new() -> Self {
        WakeSignal::default()
    }

    /// Resolves at the next wake-up (or at once, when one came since the last wait).
    pub async fn notified(&self) {
        self.0.notified().await;
    }
}

impl Waker for WakeSignal {
    fn wake(&self) {
        self.0.notify_one();
    }
}

/// Wakes the server of an instance from another process on this host, through its socket.
#[derive(Clone, Debug)]
pub struct SocketWaker {
    socket: PathBuf,
}

impl SocketWaker {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        SocketWaker {
            socket: socket.into(),
        }
    }
}

impl Waker for SocketWaker {
    /// Sends one datagram; silently does nothing when no server listens.
    fn wake(&self) {
        if let Ok(sender) = UnixDatagram::unbound() {
            let _ = sender.send_to(b"w", &self.socket);
        }
    }
}

/// Wakes several at once: a server's own signal, and the servers on other nodes (its HTTP side
/// on a PostgreSQL store).
#[derive(Clone, Default)]
pub struct Wakers(pub Vec<Arc<dyn Waker>>);

impl Waker for Wakers {
    fn wake(&self) {
        for waker in &self.0 {
            waker.wake();
        }
    }
}

/// Wakes nobody: for one-shot commands that run their own passes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWaker;

impl Waker for NoWaker {
    fn wake(&self) {}
}

/// Wakes every server sharing a PostgreSQL store: a `NOTIFY` on the store's wake channel, sent in
/// the background (`Notifier::flush` waits for it).
impl Waker for mission_store::postgres::wake::Notifier {
    fn wake(&self) {
        self.notify();
    }
}

/// Turns the notifications on a PostgreSQL store's wake channel into wake-ups of `signal` (and
/// wakes it whenever the listener connects again, for what it may have missed), until the task is
/// aborted.
pub fn listen_postgres(
    url: &str,
    signal: WakeSignal,
) -> Result<tokio::task::JoinHandle<()>, mission_store::StoreError> {
    mission_store::postgres::wake::listen(url, move || signal.wake())
}

/// Binds the wake socket (replacing a stale one left by a crashed server).
pub fn bind(socket: &Path) -> std::io::Result<tokio::net::UnixDatagram> {
    if socket.exists() {
        std::fs::remove_file(socket)?;
    }
    tokio::net::UnixDatagram::bind(socket)
}

/// Turns every datagram arriving on `socket` into a wake-up of `signal`, until the task is
/// aborted or the socket fails.
pub fn listen(socket: tokio::net::UnixDatagram, signal: WakeSignal) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while socket.recv(&mut buf).await.is_ok() {
            signal.wake();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_datagram_wakes_the_signal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wake.sock");
        let signal = WakeSignal::new();
        let listener = listen(bind(&path).unwrap(), signal.clone());
        SocketWaker::new(&path).wake();
        tokio::time::timeout(Duration::from_secs(10), signal.notified())
            .await
            .expect("woken");
        listener.abort();
        // Without a listener, waking is a no-op, not an error.
        std::fs::remove_file(&path).unwrap();
        SocketWaker::new(&path).wake();
    }
}
