//! Running child commands with a visible trace and elapsed times.

use std::process::Command;
use std::time::Instant;

/// The error type of every xtask step: a message for the user.
pub(crate) type Result<T = ()> = std::result::Result<T, String>;

/// Prints and runs `cmd` in the workspace root; fails if it exits non-zero.
pub(crate) fn step(what: &str, cmd: &mut Command) -> Result {
    cmd.current_dir(crate::root());
    println!("\n==> {what}\n    $ {}", render(cmd));
    let started = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    let secs = started.elapsed().as_secs_f64();
    if status.success() {
        println!("<== {what}: ok in {secs:.1}s");
        Ok(())
    } else {
        Err(format!("{what}: failed ({status}) after {secs:.1}s"))
    }
}

/// `cargo` from the environment that invoked xtask.
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// A shell-like rendering of a command for the log.
pub(crate) fn render(cmd: &Command) -> String {
    let envs: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    let mut parts = envs;
    parts.push(cmd.get_program().to_string_lossy().into_owned());
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Captures a command's stdout as text (empty on failure).
pub(crate) fn capture(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
