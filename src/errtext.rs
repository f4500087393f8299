//! Error texts worded as dbus-daemon words them.

/// The text of an OS error without Rust's " (os error N)" suffix, as
/// dbus-daemon words its errors.
pub fn strerror(e: &std::io::Error) -> String {
    // std words it with strerror(), as libdbus does; nix's own table
    // differs ("Bad file number" for EBADF).
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
