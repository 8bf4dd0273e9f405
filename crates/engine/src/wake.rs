//! Waking the server from another process. A change that makes work runnable (a ticket added or
//! moved to todo, a question answered) sends one datagram to the instance's wake socket; the
//! server's dispatcher runs a pass at once. Best effort: the periodic reconcile is the fallback.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// Sends a wake-up; silently does nothing when no server listens.
pub fn poke(socket: &Path) {
    if let Ok(sender) = UnixDatagram::unbound() {
        let _ = sender.send_to(b"w", socket);
    }
}

/// Binds the wake socket (replacing a stale one left by a crashed server).
pub fn bind(socket: &Path) -> std::io::Result<tokio::net::UnixDatagram> {
    if socket.exists() {
        std::fs::remove_file(socket)?;
    }
    tokio::net::UnixDatagram::bind(socket)
}
