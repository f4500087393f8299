//! busbar: a D-Bus message bus daemon, drop-in compatible with dbus-daemon.

use busbar::cli::{self, Action};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match cli::parse(&args) {
        Action::Print(text) => {
            print!("{text}");
            0
        }
        Action::Fail(text) => {
            eprint!("{text}");
            1
        }
        Action::Run(opts) => match &opts.check_config {
            Some(path) => busbar::daemon::check_config(path),
            None => busbar::daemon::run(opts),
        },
    };
    std::process::exit(code);
}
