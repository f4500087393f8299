//! A connection's groups (GetConnectionCredentials' UnixGroupIDs, and
//! `<policy group="..">`) are those its process had when it connected,
//! as the kernel recorded them on the socket (SO_PEERGROUPS), not those it
//! has later nor those the user database lists for its uid. busbar reads
//! them from the socket only when first needed; dbus-daemon reads them
//! during authentication: both must see the connect-time groups.
//!
//! The connecting thread changes its own groups with the raw setgroups
//! system call, which (unlike glibc's wrapper) changes only the calling
//! thread's credentials, so the rest of the test process keeps its own.

use crate::common;

use std::fs;

use common::*;

/// Sets the calling thread's supplementary groups (only this thread's).
fn set_thread_groups(gids: &[u32]) -> bool {
    // SAFETY: `gids` is a live slice of `gids.len()` gid_t values
    // (u32 on Linux), which the kernel only reads; the raw system call
    // changes the calling thread's credentials and nothing in this
    // process's memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            gids.len() as libc::c_long,
            gids.as_ptr() as *const libc::gid_t,
        )
    };
    r == 0
}

/// Connects (and authenticates) from a thread whose groups are `gids`,
/// which then drops them all before saying Hello.
fn connect_with_groups(bus: &Bus, gids: &'static [u32]) -> Option<Client> {
    std::thread::scope(|s| {
        s.spawn(|| {
            if !set_thread_groups(gids) {
                return None;
            }
            let mut c = Client::connect_authed(bus, false);
            if !set_thread_groups(&[]) {
                return None;
            }
            c.hello();
            Some(c)
        })
        .join()
        .expect("connecting thread")
    })
}

fn group_ids(c: &mut Client) -> Vec<u32> {
    let mut w = W::new();
    w.str(&c.unique_name.clone());
    let r = c.call_driver("GetConnectionCredentials", "s", w.buf);
    assert_eq!(r.msg_type, METHOD_RETURN, "{r:?}");
    let creds = r.reader().dict_sv();
    let mut g: Vec<u32> = creds
        .iter()
        .find(|(k, sig, _)| k == "UnixGroupIDs" && sig == "au")
        .map(|(_, _, v)| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    g.sort_unstable();
    g
}

#[test]
fn credentials_list_the_groups_at_connect_time() {
    if uid() != 0 {
        return skip_or_fail("credentials_list_the_groups_at_connect_time needs root (setgroups)");
    }
    let bus = Bus::start();
    // busbar reads the first connection's groups at once (to learn that
    // the kernel answers SO_PEERGROUPS); the ones after that are read when
    // first asked for.
    let _first = Client::connect(&bus);
    let Some(mut c) = connect_with_groups(&bus, &[4242, 4343]) else {
        return skip_or_fail("setgroups failed");
    };
    // The primary gid (root's 0) and the supplementary groups it had when
    // it connected; it has none now, and the user database gives root
    // neither 4242 nor 4343.
    assert_eq!(group_ids(&mut c), vec![0, 4242, 4343]);
    // A connection from a thread with no supplementary groups: gid 0 only.
    let mut plain = connect_with_groups(&bus, &[]).expect("connect");
    assert_eq!(group_ids(&mut plain), vec![0]);
    // Asked again: the same answer.
    assert_eq!(group_ids(&mut c), vec![0, 4242, 4343]);
}

const ALLOW_ALL: &str = r#"<policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>"#;

fn write_config(bus: &Bus, policy: &str) {
    let text = format!(
        "<busconfig>\n  <type>session</type>\n  <listen>unix:path={}</listen>\n  \
         <auth>EXTERNAL</auth>\n  {policy}\n</busconfig>\n",
        bus.dir.join("bus_socket").display()
    );
    fs::write(bus.dir.join("bus.conf"), text).unwrap();
}

#[test]
fn group_policy_loaded_later_sees_the_groups_at_connect_time() {
    if uid() != 0 {
        return skip_or_fail(
            "group_policy_loaded_later_sees_the_groups_at_connect_time needs root (setgroups)",
        );
    }
    // No group policy at first: nothing needs the groups when it connects.
    let bus = Bus::start();
    let _first = Client::connect(&bus);
    // gid 1 is group "daemon", of which root is no member.
    let Some(mut grouped) = connect_with_groups(&bus, &[1]) else {
        return skip_or_fail("setgroups failed");
    };
    let mut plain = connect_with_groups(&bus, &[]).expect("connect");
    write_config(
        &bus,
        &format!(
            "{ALLOW_ALL}\n  <policy group=\"daemon\"><deny own=\"com.example.Grouped\"/></policy>"
        ),
    );
    let r = plain.call_driver("ReloadConfig", "", Vec::new());
    assert_eq!(r.msg_type, METHOD_RETURN, "reload: {r:?}");
    // The group context applies to the connection that was in group
    // daemon when it connected (it is in no group now) ...
    let mut w = W::new();
    w.str("com.example.Grouped").u32(0);
    let r = grouped.call_driver("RequestName", "su", w.buf);
    assert_eq!(r.msg_type, ERROR, "{r:?}");
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.AccessDenied")
    );
    assert_eq!(grouped.request_name("com.example.Other", 0), 1);
    // ... and not to the one that was not.
    assert_eq!(plain.request_name("com.example.Grouped", 0), 1);
}
