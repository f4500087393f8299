//! The bus GUID (the `guid=` of its addresses, org.freedesktop.DBus.GetId).

/// The bus GUID: 16 random bytes in hex. Without random bytes there is no
/// GUID worth the name (clients use it to tell buses apart, and an
/// all-zero one would be shared by every bus so started), so start-up
/// fails, as dbus-daemon's does when neither getrandom() nor /dev/urandom
/// gives it bytes.
pub fn random_guid() -> Result<String, String> {
    guid_from(getrandom::getrandom)
}

fn guid_from<E: std::fmt::Display>(
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<String, String> {
    let mut b = [0u8; 16];
    fill(&mut b).map_err(|e| format!("Could not generate the bus GUID: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::guid_from;

    /// Issue 9: "A getrandom failure yields an all-zero GUID." The bus
    /// GUID and GetId's id both come from `random_guid` (GetId's used to
    /// come from a getrandom whose error was ignored); a failing random
    /// source, also one that fails after filling part of the buffer, gives
    /// an error (start-up fails), never a GUID of zeros.
    #[test]
    fn getrandom_failure_never_yields_an_all_zero_guid() {
        for filled in [0usize, 1, 8, 15] {
            let r = guid_from(|b: &mut [u8]| {
                b[..filled].fill(0);
                Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
            });
            let e = r.expect_err("a failed source must not give a GUID");
            assert!(e.starts_with("Could not generate the bus GUID: "), "{e}");
        }
    }

    #[test]
    fn a_failing_random_source_fails_start_up() {
        let e = guid_from(|_: &mut [u8]| Err("no entropy")).unwrap_err();
        assert_eq!(e, "Could not generate the bus GUID: no entropy");
        let g = guid_from(|b: &mut [u8]| {
            b.fill(0xab);
            Ok::<(), String>(())
        })
        .unwrap();
        assert_eq!(g, "ab".repeat(16));
        let real = super::random_guid().unwrap();
        assert_eq!(real.len(), 32);
        assert_ne!(real, "0".repeat(32));
    }
}
