//! busbar: a D-Bus message bus daemon, drop-in compatible with dbus-daemon.

use std::io::Write;

use busbar::cli::{self, Action};

fn main() {
    // Non-UTF-8 arguments are refused with the usage text like any unknown
    // option (args() would panic on them).
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let code = match cli::parse(&args) {
        Action::Print(text) => {
            // print! panics when stdout is closed or a dead pipe; an
            // unwritable --version is not worth a backtrace.
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            0
        }
        Action::Fail(text) => {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
            1
        }
        Action::Run(opts) => match &opts.check_config {
            Some(path) => busbar::daemon::check_config(path),
            None => busbar::daemon::run(opts),
        },
    };
    std::process::exit(code);
}
