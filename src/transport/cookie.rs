//! DBUS_COOKIE_SHA1 keyrings: ~/.dbus-keyrings/<context>, in dbus-daemon's
//! file format and with its rules (directory mode 0700, lock file, key
//! expiry and creation).
//!
//! File format: one key per line, `<id> <creation-unix-time> <hex-secret>`.
//! Rules, as in libdbus (dbus/dbus-keyring.c):
//!
//! * the directory must be owned by the effective uid and must not be
//!   readable or writable by group or others; otherwise the keyring is
//!   refused;
//! * keys older than [`EXPIRE_KEYS_TIMEOUT_SECONDS`] or dated more than
//!   [`MAX_TIME_TRAVEL_SECONDS`] in the future are dropped when loading;
//! * a key is only offered for a new challenge while it is younger than
//!   [`NEW_KEY_TIMEOUT_SECONDS`]; when there is none, a new key is created
//!   under the lock file `<context>.lock` (created with `O_EXCL`, waited for
//!   [`MAX_LOCK_TIMEOUTS`] × [`LOCK_TIMEOUT_MILLISECONDS`] and then assumed
//!   stale and broken) and the file is rewritten atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The cookie context dbus-daemon uses.
pub const DEFAULT_CONTEXT: &str = "org_freedesktop_general";

/// A key may be handed out for new challenges for this long after creation.
pub const NEW_KEY_TIMEOUT_SECONDS: i64 = 60 * 5;

/// Keys older than this are dropped from the keyring. It is longer than
/// [`NEW_KEY_TIMEOUT_SECONDS`] so that a challenge issued with an old key can
/// still be answered.
pub const EXPIRE_KEYS_TIMEOUT_SECONDS: i64 = NEW_KEY_TIMEOUT_SECONDS + 60 * 2;

/// Keys dated further than this into the future are considered bogus.
pub const MAX_TIME_TRAVEL_SECONDS: i64 = 60 * 5;

/// At most this many keys are kept in a keyring file.
pub const MAX_KEYS_IN_FILE: usize = 256;

/// How many times to wait for the lock file before deciding it is stale.
pub const MAX_LOCK_TIMEOUTS: u32 = 32;

/// How long each wait for the lock file lasts.
pub const LOCK_TIMEOUT_MILLISECONDS: u64 = 250;

/// Length of a newly created secret, in bytes.
const KEY_LENGTH_BYTES: usize = 24;

/// Keyring files bigger than this are not read.
const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// One secret of a keyring.
#[derive(Clone, PartialEq, Eq)]
struct Key {
    id: i32,
    creation_time: i64,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("creation_time", &self.creation_time)
            .finish_non_exhaustive()
    }
}

/// A loaded keyring for one context.
#[derive(Debug)]
pub struct Keyring {
    directory: PathBuf,
    filename: PathBuf,
    lock_filename: PathBuf,
    keys: Vec<Key>,
    lock_timeouts: u32,
    lock_wait: Duration,
}

/// Lowercase hex encoding.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Decodes hex the way libdbus does: either case is accepted, and an odd
/// trailing digit becomes the high nibble of a last byte. Returns `None` if
/// any byte is not a hex digit.
pub fn hex_decode(hex: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(hex.len().div_ceil(2));
    for (i, &c) in hex.iter().enumerate() {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        if i % 2 == 0 {
            out.push(v << 4);
        } else if let Some(last) = out.last_mut() {
            *last |= v;
        }
    }
    Some(out)
}

/// Whether `context` is an acceptable cookie context name: non-empty ASCII
/// with no NUL, `/`, `\`, `.`, blanks, CR or LF.
pub fn validate_context(context: &str) -> bool {
    !context.is_empty()
        && context
            .bytes()
            .all(|b| b.is_ascii() && !b"\0/\\. \t\r\n".contains(&b))
}

/// The DBUS_COOKIE_SHA1 response hash: lowercase hex of
/// SHA-1(`server_challenge` ":" `client_challenge` ":" `hex_cookie`).
pub fn compute_hash(server_challenge: &[u8], client_challenge: &[u8], hex_cookie: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(server_challenge);
    h.update(b":");
    h.update(client_challenge);
    h.update(b":");
    h.update(hex_cookie);
    hex_encode(&h.finalize())
}

/// Fills a buffer of `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(buf)
}

/// Parses an integer the way C's `strtol(s, &end, 0)` would when it must
/// consume the whole token: optional sign, then decimal, `0x` hex or `0`
/// octal. Returns `None` on anything else or overflow.
pub(crate) fn parse_c_integer(s: &[u8]) -> Option<i128> {
    let (neg, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if s.len() > 2 && (s.starts_with(b"0x") || s.starts_with(b"0X")) {
        (16, &s[2..])
    } else if s.len() > 1 && s[0] == b'0' {
        (8, &s[1..])
    } else {
        (10, s)
    };
    if digits.is_empty() || digits.len() > 40 {
        return None;
    }
    let mut v: i128 = 0;
    for &c in digits {
        let d = char::from(c).to_digit(radix)?;
        v = v
            .checked_mul(i128::from(radix))?
            .checked_add(i128::from(d))?;
    }
    Some(if neg { -v } else { v })
}

fn now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Whether the process runs setuid/setgid, where keyrings are refused.
fn is_setuid() -> bool {
    nix::unistd::getuid() != nix::unistd::geteuid()
        || nix::unistd::getgid() != nix::unistd::getegid()
}

/// The keyring directory (`<home>/.dbus-keyrings`) of the daemon's own
/// effective user. Like libdbus, `$HOME` is used when the real and effective
/// uids agree and it is set; otherwise the home directory from the user
/// database.
pub fn keyring_dir_for_current_user() -> io::Result<PathBuf> {
    let euid = nix::unistd::geteuid();
    let mut home = None;
    if nix::unistd::getuid() == euid {
        if let Some(h) = std::env::var_os("HOME") {
            home = Some(PathBuf::from(h));
        }
    }
    let home = match home {
        Some(h) => h,
        None => match nix::unistd::User::from_uid(euid) {
            Ok(Some(u)) => u.dir,
            Ok(None) => return Err(io::Error::other("current user not in user database")),
            Err(e) => return Err(io::Error::from(e)),
        },
    };
    Ok(home.join(".dbus-keyrings"))
}

impl Keyring {
    /// Opens the keyring `context` of the daemon's own user, in
    /// [`keyring_dir_for_current_user`]. Refused when running setuid.
    pub fn open_for_current_user(context: &str) -> io::Result<Keyring> {
        if is_setuid() {
            return Err(io::Error::other("refusing to use a keyring while setuid"));
        }
        Keyring::open(keyring_dir_for_current_user()?, context)
    }

    /// Opens the keyring `context` in `directory`, loading existing keys if
    /// possible and creating the directory (mode 0700) if it is missing.
    /// Failing to load or create is not an error here: the keyring is then
    /// empty, and [`Keyring::best_key`] reports the problem.
    pub fn open(directory: PathBuf, context: &str) -> io::Result<Keyring> {
        if !validate_context(context) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid keyring context",
            ));
        }
        let filename = directory.join(context);
        let lock_filename = directory.join(format!("{context}.lock"));
        let mut ring = Keyring {
            directory,
            filename,
            lock_filename,
            keys: Vec::new(),
            lock_timeouts: MAX_LOCK_TIMEOUTS,
            lock_wait: Duration::from_millis(LOCK_TIMEOUT_MILLISECONDS),
        };
        let _ = ring.reload(false);
        match fs::DirBuilder::new().mode(0o700).create(&ring.directory) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => {}
        }
        Ok(ring)
    }

    /// The id of a key recent enough for a new challenge, creating and
    /// saving a new key when there is none.
    pub fn best_key(&mut self) -> io::Result<i32> {
        if let Some(id) = self.find_recent_key() {
            return Ok(id);
        }
        self.reload(true)?;
        self.find_recent_key().ok_or_else(|| {
            io::Error::other("no recent-enough key in keyring and unable to create one")
        })
    }

    /// The secret of key `id`, hex-encoded (as used in the hash), if loaded.
    pub fn hex_key(&self, id: i32) -> Option<String> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .map(|k| hex_encode(&k.secret))
    }

    /// The keyring file's path.
    pub fn path(&self) -> &Path {
        &self.filename
    }

    fn find_recent_key(&self) -> Option<i32> {
        let now = now();
        self.keys
            .iter()
            .find(|k| now.saturating_sub(NEW_KEY_TIMEOUT_SECONDS) < k.creation_time)
            .map(|k| k.id)
    }

    fn check_dir_private(&self) -> io::Result<()> {
        let md = fs::metadata(&self.directory)?;
        if md.uid() != nix::unistd::geteuid().as_raw() {
            return Err(io::Error::other(format!(
                "{} is owned by uid {}, not {}",
                self.directory.display(),
                md.uid(),
                nix::unistd::geteuid()
            )));
        }
        if md.mode() & 0o066 != 0 {
            return Err(io::Error::other(format!(
                "{} is not private to its owner",
                self.directory.display()
            )));
        }
        Ok(())
    }

    fn try_create_lock(&self) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.lock_filename)
            .map(drop)
    }

    fn lock(&self) -> io::Result<()> {
        for _ in 0..self.lock_timeouts {
            if self.try_create_lock().is_ok() {
                return Ok(());
            }
            std::thread::sleep(self.lock_wait);
        }
        // Waited long enough: assume whoever held it died.
        fs::remove_file(&self.lock_filename)?;
        self.try_create_lock()
    }

    fn unlock(&self) {
        let _ = fs::remove_file(&self.lock_filename);
    }

    fn read_contents(&self) -> io::Result<Vec<u8>> {
        let mut f = File::open(&self.filename)?;
        let md = f.metadata()?;
        if md.len() > MAX_FILE_SIZE {
            return Err(io::Error::other("keyring file too large"));
        }
        let mut buf = Vec::new();
        if md.is_file() {
            f.read_to_end(&mut buf)?;
        }
        Ok(buf)
    }

    fn parse(contents: &[u8], max_keys: usize, now: i64) -> Vec<Key> {
        let mut keys: Vec<Key> = Vec::new();
        if contents.iter().any(|&b| b == 0 || !b.is_ascii()) {
            return keys;
        }
        for line in contents.split(|&b| b == b'\n') {
            if keys.len() >= max_keys {
                break;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let mut fields = line.split(|&b| is_blank(b)).filter(|f| !f.is_empty());
            let (Some(id), Some(ts), Some(secret), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Some(id) = parse_c_integer(id).and_then(|v| i32::try_from(v).ok()) else {
                continue;
            };
            if id < 0 {
                continue;
            }
            let Some(ts) = parse_c_integer(ts).and_then(|v| i64::try_from(v).ok()) else {
                continue;
            };
            if ts < 0
                || now.saturating_add(MAX_TIME_TRAVEL_SECONDS) < ts
                || now.saturating_sub(EXPIRE_KEYS_TIMEOUT_SECONDS) > ts
            {
                continue;
            }
            let Some(secret) = hex_decode(secret) else {
                continue;
            };
            keys.push(Key {
                id,
                creation_time: ts,
                secret,
            });
        }
        keys
    }

    fn serialize(keys: &[Key]) -> Vec<u8> {
        let mut out = Vec::new();
        for k in keys {
            out.extend_from_slice(
                format!("{} {} {}\n", k.id, k.creation_time, hex_encode(&k.secret)).as_bytes(),
            );
        }
        out
    }

    fn new_key(keys: &[Key], now: i64) -> io::Result<Key> {
        let id = loop {
            let b = random_bytes(4)?;
            let id = i32::from_le_bytes([b[0], b[1], b[2], b[3] & 0x7f]);
            if !keys.iter().any(|k| k.id == id) {
                break id;
            }
        };
        Ok(Key {
            id,
            creation_time: now,
            secret: random_bytes(KEY_LENGTH_BYTES)?,
        })
    }

    fn save(&self, contents: &[u8]) -> io::Result<()> {
        let suffix: String = random_bytes(8)?
            .iter()
            .map(|b| {
                char::from(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._"
                        [usize::from(b % 64)],
                )
            })
            .collect();
        let mut tmp = self.filename.clone().into_os_string();
        tmp.push(".");
        tmp.push(&suffix);
        let tmp = PathBuf::from(tmp);
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(contents)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &self.filename)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Re-reads the file; with `add_new`, also adds a fresh key and writes
    /// the file back, all under the lock.
    fn reload(&mut self, add_new: bool) -> io::Result<()> {
        self.check_dir_private()?;
        let now = now();
        if add_new {
            self.lock()
                .map_err(|e| io::Error::other(format!("could not lock keyring file: {e}")))?;
        }
        let result: io::Result<Vec<Key>> = (|| {
            let contents = self.read_contents().unwrap_or_default();
            let max = if add_new {
                MAX_KEYS_IN_FILE - 1
            } else {
                MAX_KEYS_IN_FILE
            };
            let mut keys = Keyring::parse(&contents, max, now);
            if add_new {
                let key = Keyring::new_key(&keys, now)?;
                keys.push(key);
                self.save(&Keyring::serialize(&keys))?;
            }
            Ok(keys)
        })();
        if add_new {
            self.unlock();
        }
        self.keys = result?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fresh private directory under the system temp dir.
    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        let r = hex_encode(&random_bytes(6).unwrap());
        let d = std::env::temp_dir().join(format!("busbar-{tag}-{}-{r}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&d)
            .unwrap();
        d
    }

    #[test]
    fn hex_roundtrip_and_libdbus_quirks() {
        assert_eq!(hex_encode(b"\x00\xffA"), "00ff41");
        assert_eq!(hex_decode(b"00FFa1").unwrap(), b"\x00\xff\xa1");
        assert_eq!(hex_decode(b"3").unwrap(), b"\x30");
        assert_eq!(hex_decode(b"").unwrap(), b"");
        assert!(hex_decode(b"zz").is_none());
        assert!(hex_decode(b"31 ").is_none());
    }

    #[test]
    fn contexts() {
        assert!(validate_context("org_freedesktop_general"));
        assert!(validate_context("foo"));
        for bad in [
            "", ".foo", "bar.foo", "bar/foo", "bar\\foo", "a b", "a\tb", "a\nb", "a\rb", "fo\u{e9}",
        ] {
            assert!(!validate_context(bad), "{bad:?}");
        }
        let dir = temp_dir("ctx");
        assert!(Keyring::open(dir.clone(), "../x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn c_integers() {
        assert_eq!(parse_c_integer(b"0"), Some(0));
        assert_eq!(parse_c_integer(b"1000"), Some(1000));
        assert_eq!(parse_c_integer(b"0x10"), Some(16));
        assert_eq!(parse_c_integer(b"010"), Some(8));
        assert_eq!(parse_c_integer(b"-5"), Some(-5));
        assert_eq!(parse_c_integer(b""), None);
        assert_eq!(parse_c_integer(b"12a"), None);
        assert_eq!(parse_c_integer(b"09"), None);
        assert_eq!(parse_c_integer(&[b'9'; 100]), None);
    }

    #[test]
    fn hash_matches_known_value() {
        assert_eq!(
            compute_hash(b"a", b"b", b"c"),
            "70bce09e827a98fe6acf7c3e9b0bcf136bc382ed"
        );
        assert_eq!(
            compute_hash(b"srv", b"cli", b"00ff"),
            "51c5a6562b52ef98646fbc8a59e955f775894739"
        );
        assert_eq!(compute_hash(b"", b"", b"").len(), 40);
    }

    #[test]
    fn creates_dir_and_key_and_reuses_it() {
        let home = temp_dir("ring");
        let dir = home.join(".dbus-keyrings");
        let mut ring = Keyring::open(dir.clone(), DEFAULT_CONTEXT).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let id = ring.best_key().unwrap();
        assert!(id >= 0);
        let hex = ring.hex_key(id).unwrap();
        assert_eq!(hex.len(), KEY_LENGTH_BYTES * 2);
        let text = fs::read_to_string(dir.join(DEFAULT_CONTEXT)).unwrap();
        assert!(text.starts_with(&format!("{id} ")), "{text}");
        assert!(text.trim_end().ends_with(&hex));
        assert_eq!(
            fs::metadata(dir.join(DEFAULT_CONTEXT)).unwrap().mode() & 0o777,
            0o600
        );
        assert!(!dir.join("org_freedesktop_general.lock").exists());
        // A second keyring sees the same key and does not add another.
        let mut ring2 = Keyring::open(dir.clone(), DEFAULT_CONTEXT).unwrap();
        assert_eq!(ring2.best_key().unwrap(), id);
        assert_eq!(ring2.hex_key(id).unwrap(), hex);
        assert_eq!(
            fs::read_to_string(dir.join(DEFAULT_CONTEXT))
                .unwrap()
                .lines()
                .count(),
            1
        );
        fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn expiry_rules() {
        let dir = temp_dir("expiry");
        let now = now();
        let fresh = now - 10;
        let old_but_valid = now - NEW_KEY_TIMEOUT_SECONDS - 30; // usable for replies only
        let expired = now - EXPIRE_KEYS_TIMEOUT_SECONDS - 30;
        let future = now + MAX_TIME_TRAVEL_SECONDS + 100;
        let body = format!(
            "1 {expired} aa\n2 {future} bb\n3 {old_but_valid} cc\nnonsense\n4 5 zz\n-7 {fresh} dd\n5 {old_but_valid} 0A0b\r\n"
        );
        fs::write(dir.join("ctx"), body).unwrap();
        let mut ring = Keyring::open(dir.clone(), "ctx").unwrap();
        assert_eq!(ring.hex_key(1), None);
        assert_eq!(ring.hex_key(2), None);
        assert_eq!(ring.hex_key(3).as_deref(), Some("cc"));
        assert_eq!(ring.hex_key(5).as_deref(), Some("0a0b"));
        // No recent key: a new one is made, old-but-valid ones are kept.
        let id = ring.best_key().unwrap();
        assert!(![1, 2, 3, 5].contains(&id));
        let text = fs::read_to_string(dir.join("ctx")).unwrap();
        let ids: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(ids, vec!["3".to_string(), "5".to_string(), id.to_string()]);
        // Now a fresh key exists and is preferred.
        fs::write(
            dir.join("ctx"),
            format!("3 {old_but_valid} cc\n9 {fresh} 99\n"),
        )
        .unwrap();
        let mut ring = Keyring::open(dir.clone(), "ctx").unwrap();
        assert_eq!(ring.best_key().unwrap(), 9);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn non_ascii_file_is_ignored() {
        let dir = temp_dir("nonascii");
        fs::write(dir.join("ctx"), format!("3 {} cc\n\u{e9}\n", now())).unwrap();
        let ring = Keyring::open(dir.clone(), "ctx").unwrap();
        assert_eq!(ring.hex_key(3), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_group_or_world_accessible_dir() {
        let dir = temp_dir("perm");
        fs::write(dir.join("ctx"), format!("3 {} cc\n", now())).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        let mut ring = Keyring::open(dir.clone(), "ctx").unwrap();
        assert_eq!(ring.hex_key(3), None);
        assert!(ring.best_key().is_err());
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o702)).unwrap();
        assert!(Keyring::open(dir.clone(), "ctx")
            .unwrap()
            .best_key()
            .is_err());
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            Keyring::open(dir.clone(), "ctx")
                .unwrap()
                .best_key()
                .unwrap(),
            3
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_lock_is_broken() {
        let dir = temp_dir("lock");
        fs::write(dir.join("ctx.lock"), b"").unwrap();
        let mut ring = Keyring::open(dir.clone(), "ctx").unwrap();
        ring.lock_timeouts = 3;
        ring.lock_wait = Duration::from_millis(5);
        let id = ring.best_key().unwrap();
        assert!(ring.hex_key(id).is_some());
        assert!(!dir.join("ctx.lock").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn key_limit_is_enforced() {
        let dir = temp_dir("limit");
        let old = now() - NEW_KEY_TIMEOUT_SECONDS - 10;
        let body: String = (0..400).map(|i| format!("{i} {old} ab\n")).collect();
        fs::write(dir.join("ctx"), body).unwrap();
        let mut ring = Keyring::open(dir.clone(), "ctx").unwrap();
        assert_eq!(ring.keys.len(), MAX_KEYS_IN_FILE);
        ring.best_key().unwrap();
        assert_eq!(ring.keys.len(), MAX_KEYS_IN_FILE);
        assert_eq!(
            fs::read_to_string(dir.join("ctx")).unwrap().lines().count(),
            MAX_KEYS_IN_FILE
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
