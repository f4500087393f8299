//! Listening sockets for every address kind dbus-daemon supports on Linux:
//! unix path/abstract/tmpdir/dir/runtime, tcp, and systemd socket activation.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener as StdUnixListener};
use std::path::PathBuf;

use super::address::{escape, AddressEntry};
use super::stream::Stream;

/// A bound, listening socket.
#[derive(Debug)]
pub enum Listener {
    /// A unix-domain socket.
    Unix(mio::net::UnixListener),
    /// A TCP socket.
    Tcp(mio::net::TcpListener),
}

/// A listener plus what the daemon must print and clean up for it.
#[derive(Debug)]
pub struct Bound {
    /// The socket.
    pub listener: Listener,
    /// The connectable address, without `,guid=`.
    pub address: String,
    /// A socket file to unlink at exit.
    pub cleanup: Option<PathBuf>,
}

impl Listener {
    /// Accepts one connection, non-blocking.
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
        }
    }
}

/// Ten random letters and digits, as libdbus names its sockets in a
/// directory (`dbus-XXXXXXXXXX`).
fn random_suffix() -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut b = [0u8; 10];
    let _ = getrandom::getrandom(&mut b);
    b.iter()
        .map(|x| ALNUM[usize::from(*x) % ALNUM.len()] as char)
        .collect()
}

fn unix_path_listener(path: PathBuf) -> io::Result<Bound> {
    // dbus-daemon replaces a stale socket file at an explicit path.
    if let Ok(md) = std::fs::symlink_metadata(&path) {
        use std::os::unix::fs::FileTypeExt;
        if md.file_type().is_socket() {
            let _ = std::fs::remove_file(&path);
        }
    }
    let l = StdUnixListener::bind(&path)?;
    l.set_nonblocking(true)?;
    let address = format!("unix:path={}", escape(&path.to_string_lossy()));
    Ok(Bound {
        listener: Listener::Unix(mio::net::UnixListener::from_std(l)),
        address,
        cleanup: Some(path),
    })
}

fn unix_abstract_listener(name: &str) -> io::Result<Bound> {
    let addr = UnixAddr::from_abstract_name(name.as_bytes())?;
    let l = StdUnixListener::bind_addr(&addr)?;
    l.set_nonblocking(true)?;
    Ok(Bound {
        listener: Listener::Unix(mio::net::UnixListener::from_std(l)),
        address: format!("unix:abstract={}", escape(name)),
        cleanup: None,
    })
}

/// Opens a listener for one `<listen>`/`--address` entry. `systemd_fds`
/// holds sockets passed by systemd (LISTEN_FDS), consumed by `systemd:`.
pub fn listen(entry: &AddressEntry, systemd_fds: &mut Vec<OwnedFd>) -> Result<Vec<Bound>, String> {
    let err = |e: io::Error| {
        format!(
            "Failed to listen on {}: {}",
            entry.transport,
            crate::errtext::strerror(&e)
        )
    };
    match entry.transport.as_str() {
        "unix" => {
            let keys = ["path", "abstract", "tmpdir", "dir", "runtime"];
            let given: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| entry.get(k).is_some())
                .collect();
            if given.len() != 1 {
                return Err(
                    "Must specify exactly one of \"path\", \"abstract\", \"dir\", \"tmpdir\" or \"runtime\" for unix: transport"
                        .into(),
                );
            }
            let b = match given[0] {
                "path" => unix_path_listener(PathBuf::from(entry.get("path").unwrap_or_default()))
                    .map_err(|e| {
                        format!(
                            "Failed to bind socket \"{}\": {}",
                            entry.get("path").unwrap_or_default(),
                            crate::errtext::strerror(&e)
                        )
                    })?,
                "abstract" => unix_abstract_listener(entry.get("abstract").unwrap_or_default())
                    .map_err(err)?,
                // dbus-daemon 1.14 (Debian 12's 1.14.10 at least) makes a
                // socket file for tmpdir= too, and removes it at exit, so
                // tmpdir= and dir= are one branch. (It leaves a dir=
                // socket behind at exit; busbar removes both.)
                "tmpdir" | "dir" => {
                    let dir = entry.get(given[0]).unwrap_or_default();
                    unix_path_listener(PathBuf::from(format!("{dir}/dbus-{}", random_suffix())))
                        .map_err(err)?
                }
                _ => {
                    if entry.get("runtime") != Some("yes") {
                        return Err(format!(
                            "Unsupported value for runtime= in unix address: \"{}\"",
                            entry.get("runtime").unwrap_or_default()
                        ));
                    }
                    let dir = std::env::var_os("XDG_RUNTIME_DIR").ok_or_else(|| {
                        "\"XDG_RUNTIME_DIR\" environment variable not set".to_string()
                    })?;
                    let mut p = PathBuf::from(dir);
                    p.push("bus");
                    unix_path_listener(p).map_err(err)?
                }
            };
            Ok(vec![b])
        }
        "tcp" => {
            let host = entry.get("host").unwrap_or("localhost");
            let bind = entry.get("bind").unwrap_or(host);
            let port: u16 =
                entry.get("port").unwrap_or("0").parse().map_err(|_| {
                    format!("Bad port \"{}\"", entry.get("port").unwrap_or_default())
                })?;
            let family = entry.get("family");
            let bind_host = if bind == "*" { "0.0.0.0" } else { bind };
            let addrs: Vec<SocketAddr> = (bind_host, port)
                .to_socket_addrs()
                .map_err(|e| format!("Failed to look up host \"{bind_host}\": {e}"))?
                .filter(|a| match family {
                    Some("ipv4") => a.is_ipv4(),
                    Some("ipv6") => a.is_ipv6(),
                    _ => true,
                })
                .collect();
            let first = addrs
                .first()
                .ok_or_else(|| format!("Failed to bind socket \"{host}:{port}\": no address"))?;
            let l = std::net::TcpListener::bind(first).map_err(err)?;
            l.set_nonblocking(true).map_err(err)?;
            let actual = l.local_addr().map_err(err)?;
            let fam = if actual.is_ipv4() { "ipv4" } else { "ipv6" };
            crate::log::warning(&format!(
                "listening on TCP ({host}:{}): TCP has no credentials passing \
                 and is not encrypted; use it only on trusted networks",
                actual.port()
            ));
            Ok(vec![Bound {
                listener: Listener::Tcp(mio::net::TcpListener::from_std(l)),
                address: format!(
                    "tcp:host={},bind={},port={},family={fam}",
                    escape(host),
                    escape(bind),
                    actual.port()
                ),
                cleanup: None,
            }])
        }
        "systemd" => {
            if systemd_fds.is_empty() {
                return Err(
                    "Failed to get sockets from systemd: no sockets were passed (LISTEN_FDS)"
                        .into(),
                );
            }
            let mut out = Vec::new();
            for fd in systemd_fds.drain(..) {
                out.push(from_inherited(fd).map_err(err)?);
            }
            Ok(out)
        }
        other => Err(format!("Unknown address type '{other}'")),
    }
}

fn from_inherited(fd: OwnedFd) -> io::Result<Bound> {
    use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let ss: SockaddrStorage = getsockname(fd.as_raw_fd()).map_err(io::Error::from)?;
    match ss.family() {
        Some(AddressFamily::Unix) => {
            let l = StdUnixListener::from(fd);
            l.set_nonblocking(true)?;
            let addr = match ss.as_unix_addr() {
                Some(u) => match (u.path(), u.as_abstract()) {
                    (Some(p), _) => format!("unix:path={}", escape(&p.to_string_lossy())),
                    (_, Some(a)) => {
                        format!("unix:abstract={}", escape(&String::from_utf8_lossy(a)))
                    }
                    _ => "unix:".to_string(),
                },
                None => "unix:".to_string(),
            };
            Ok(Bound {
                listener: Listener::Unix(mio::net::UnixListener::from_std(l)),
                address: addr,
                cleanup: None,
            })
        }
        _ => {
            let l = std::net::TcpListener::from(fd);
            l.set_nonblocking(true)?;
            let a = l.local_addr()?;
            let fam = if a.is_ipv4() { "ipv4" } else { "ipv6" };
            Ok(Bound {
                listener: Listener::Tcp(mio::net::TcpListener::from_std(l)),
                address: format!("tcp:host={},port={},family={fam}", a.ip(), a.port()),
                cleanup: None,
            })
        }
    }
}

/// Takes the sockets systemd passed (LISTEN_PID/LISTEN_FDS), as
/// sd_listen_fds() does, and unsets the variables.
pub fn take_systemd_fds() -> Vec<OwnedFd> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let n: RawFd = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if !pid_ok || n <= 0 {
        return Vec::new();
    }
    (3..3 + n)
        .filter(|&fd| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok())
        .map(|fd| {
            let _ = nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            // SAFETY: systemd passed fds 3..3+LISTEN_FDS to this process for
            // it to own; F_GETFD just confirmed each is open, LISTEN_PID
            // confirmed they are meant for us, and we wrap each exactly once
            // (the variables are unset above so nothing else will).
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .collect()
}
