//! Looking at a running server from outside, for the benchmarks: readiness, CPU, memory.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// A child process killed and reaped when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until a server listens on its wake socket.
pub fn wait_for_wake_socket(socket: &Path, within: Duration) {
    let started = Instant::now();
    while std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.send_to(b"w", socket))
        .is_err()
    {
        assert!(started.elapsed() < within, "server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// User plus system CPU time of a process, in clock ticks (1/100 s on Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the command name.
    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
}

/// Resident and peak resident memory of a process, in MiB.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The share of one core a process used over `span`, in percent.
pub fn cpu_share(pid: u32, span: Duration) -> f64 {
    let (before, started) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(span);
    let used = cpu_ticks(pid) - before;
    used as f64 / 100.0 / started.elapsed().as_secs_f64() * 100.0
}
