//! `mission-sandbox`: the sandboxing launcher as a binary of its own, installed beside `mission`.
//!
//! A run's first moments are on the pickup path, and the launcher is exec'd once per run, per
//! configured test and per worker call: this binary links nothing but the launcher (no runtime,
//! no HTTP side, no store), so the kernel maps and relocates a small image instead of the whole
//! `mission` binary. It takes the same arguments as the hidden `mission __run-sandboxed`
//! (`[__run-sandboxed] --spec FILE -- PROGRAM ARGS…`), which stays as the fallback when this
//! binary is not installed.

fn main() -> std::process::ExitCode {
    // Whatever the launcher writes (the status file) is its user's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let mut argv = std::env::args_os().skip(1).peekable();
    if argv
        .peek()
        .is_some_and(|a| a == mission_engine::sandbox::launch::COMMAND)
    {
        argv.next();
    }
    let spec = match (argv.next(), argv.next(), argv.next()) {
        (Some(flag), Some(spec), Some(dashes)) if flag == "--spec" && dashes == "--" => spec,
        _ => {
            eprintln!(
                "mission-sandbox: usage: mission-sandbox --spec FILE -- PROGRAM ARGS… (started by the runner)"
            );
            return std::process::ExitCode::from(mission_engine::sandbox::launch::SETUP_FAILED);
        }
    };
    let args: Vec<std::ffi::OsString> = argv.collect();
    let (code, message) = mission_engine::sandbox::launch::run(std::path::Path::new(&spec), &args);
    eprintln!("mission-sandbox: {message}");
    std::process::ExitCode::from(code)
}
