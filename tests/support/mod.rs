//! Start-up and logging tests need control over the daemon's stdio,
//! environment and arguments that `common::Bus` does not give: this spawns
//! the daemon under test (busbar, or `BUSBAR_TEST_DAEMON`) with a caller-
//! built `Command`, and connects the raw client of `common` to it.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::common::{connect_address, read_line, uid, Client, TIMEOUT};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let d = std::env::temp_dir().join(format!("busbar-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("create temp dir");
        TempDir(d)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes a session-like config listening in `dir`; `extra` goes inside
/// `<busconfig>`.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("bus.conf");
    let text = format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  {extra}
</busconfig>
"#,
        dir.join("bus_socket").display()
    );
    fs::write(&config, text).expect("write config");
    config
}

/// The daemon command with `--config-file` and `--nofork` set.
pub fn daemon_command(config: &Path) -> Command {
    let mut cmd = Command::new(crate::common::daemon_path());
    cmd.arg(format!("--config-file={}", config.display()))
        .arg("--nofork")
        .stdin(Stdio::null());
    cmd
}

/// A daemon started by a test; SIGTERM (then SIGKILL) on drop.
pub struct Daemon {
    pub child: Child,
    pub address: String,
}

impl Daemon {
    /// Spawns `cmd`, which must print the address on stdout
    /// (`--print-address=1`; stdout is piped here).
    pub fn spawn(mut cmd: Command) -> Daemon {
        let mut child = crate::common::spawn_retrying(cmd.stdout(Stdio::piped()))
            .unwrap_or_else(|e| panic!("spawn {}: {e}", crate::common::daemon_path()));
        let address =
            crate::common::read_printed_address(&mut child).unwrap_or_else(|e| panic!("{e}"));
        Daemon { child, address }
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Connects, authenticates with EXTERNAL and says Hello.
    pub fn client(&self) -> Client {
        let mut c = Client::from_stream(self.authed());
        c.hello();
        c
    }

    /// A connected, authenticated stream (after BEGIN).
    pub fn authed(&self) -> std::os::unix::net::UnixStream {
        let mut sock = self.raw();
        let hex: String = uid()
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        sock.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
            .unwrap();
        let line = read_line(&mut sock);
        assert!(line.starts_with("OK "), "auth: {line:?}");
        sock.write_all(b"BEGIN\r\n").unwrap();
        sock
    }

    /// A connected stream, not authenticated.
    pub fn raw(&self) -> std::os::unix::net::UnixStream {
        let s = connect_address(&self.address).expect("connect");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
        s
    }

    /// Waits for the daemon to exit (it is killed after the timeout).
    pub fn wait_exit(&mut self) -> Option<i32> {
        wait_exit(&mut self.child)
    }
}

/// Waits for `child` to exit within the timeout; kills it otherwise.
pub fn wait_exit(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st.code(),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon did not exit within {TIMEOUT:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("wait: {e}"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + TIMEOUT;
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A message whose fixed header is invalid (bad endianness byte): every
/// daemon disconnects the sender, and busbar logs it.
pub fn malformed_message() -> Vec<u8> {
    let mut m = vec![b'X', 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[0u8; 16]);
    m
}

/// Connects, authenticates, sends a malformed message and waits until the
/// daemon hangs up.
pub fn send_malformed(d: &Daemon) {
    let mut s = d.authed();
    crate::common::write_lenient(&mut s, &malformed_message());
    crate::common::expect_disconnect(&mut s, "malformed message");
}
