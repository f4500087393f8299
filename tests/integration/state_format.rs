//! issue 11: the saved-state format (doc/state-format.md). States written
//! by busbar with formats 1.0 and 1.1 (tests/fixtures/state-1.*.bin, dumped
//! during a real re-exec with BUSBAR_STATE_DUMP) must keep decoding and
//! restoring, so a change that breaks reading either fails here. Corrupt
//! states are refused with an error, never a panic. busbar's own format:
//! nothing here runs a daemon, so there is nothing to compare with
//! dbus-daemon.

use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use busbar::broker::bus::Bus;
use busbar::statefile;

const FIXTURE: &[u8] = include_bytes!("../fixtures/state-1.0.bin");
/// 1.1 added bodies being spliced; this one holds a stalled one.
const FIXTURE_1_1: &[u8] = include_bytes!("../fixtures/state-1.1.bin");

#[test]
fn fixture_headers_give_their_versions() {
    assert_eq!(statefile::version_of(FIXTURE).unwrap(), (1, 0));
    assert_eq!(statefile::version_of(FIXTURE_1_1).unwrap(), (1, 1));
}

#[test]
fn fixture_1_0_decodes_and_restores() {
    let bodies = decode_and_restore(FIXTURE);
    assert_eq!(bodies, 0, "1.0 had no bodies being spliced");
}

#[test]
fn fixture_1_1_decodes_and_restores_its_spliced_body() {
    let bodies = decode_and_restore(FIXTURE_1_1);
    assert!(bodies >= 1, "the 1.1 fixture's body is restored: {bodies}");
}

/// Decodes and restores `fixture` with fresh fds; returns how many bodies
/// being spliced the restored bus took over.
fn decode_and_restore(fixture: &[u8]) -> usize {
    let mut snap = statefile::decode(fixture).expect("the fixture decodes");
    assert!(!snap.listeners.is_empty(), "fixture has a listener");
    let st = &mut snap.bus;
    assert!(
        st.peers.len() >= 3,
        "fixture has connections: {}",
        st.peers.len()
    );
    assert!(!st.names.is_empty(), "fixture has a well-known name");
    assert!(
        st.peers.iter().any(|p| !p.rules.is_empty()),
        "fixture has a match rule"
    );
    assert!(!st.monitors.is_empty(), "fixture has a monitor");
    assert!(!st.replies.is_empty(), "fixture has a pending call");
    assert!(
        st.peers.iter().any(|p| p.sasl.is_some()),
        "fixture has a connection authenticating"
    );
    assert!(
        st.peers.iter().any(|p| !p.out.is_empty()),
        "fixture has queued output"
    );
    let guid = st.guid.clone();
    // The fixture's fd numbers mean nothing here: give every one a fresh
    // socket of this process, as the exec would have handed them over.
    let mut keep = Vec::new();
    let mut fresh = || {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        keep.push(b);
        a.into_raw_fd()
    };
    for p in &mut st.peers {
        p.fd = fresh();
        for f in &mut p.in_fds {
            *f = fresh();
        }
    }
    for m in &mut st.messages {
        for f in &mut m.fds {
            *f = fresh();
        }
    }
    // A body's pipe: a fresh one holding as many bytes as the old one did.
    for b in &mut st.bodies {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        let fill = vec![0u8; usize::try_from(b.in_pipe).unwrap()];
        let size = fill.len().max(4096);
        nix::fcntl::fcntl(
            w.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(i32::try_from(size).unwrap()),
        )
        .unwrap();
        assert_eq!(nix::unistd::write(&w, &fill).unwrap(), fill.len());
        b.pipe_read = r.into_raw_fd();
        b.pipe_write = w.into_raw_fd();
    }
    let expected_bodies = st.bodies.len();
    let before = busbar::broker::splice::in_flight();
    let n = st.peers.len();
    let cfg = busbar::config::load(&busbar::cli::ConfigChoice::Session).unwrap();
    let sasl = Rc::new(busbar::config::sasl_config(&cfg, &guid));
    let bus = Bus::restore(snap.bus, Rc::new(cfg), sasl, Default::default())
        .expect("the fixture restores");
    assert_eq!(bus.n_peers(), n);
    assert_eq!(bus.guid(), guid);
    assert!(!bus.names().is_empty());
    assert!(bus.match_rules() >= 1);
    assert!(bus.has_monitors());
    let bodies = busbar::broker::splice::in_flight() - before;
    assert_eq!(bodies, expected_bodies, "every saved body is live again");
    drop(bus);
    drop(keep);
    bodies
}

#[test]
fn round_trip_is_exact() {
    for fixture in [FIXTURE, FIXTURE_1_1] {
        let snap = statefile::decode(fixture).unwrap();
        let again = statefile::encode(&snap).unwrap();
        let snap2 = statefile::decode(&again).unwrap();
        assert_eq!(format!("{snap:?}"), format!("{snap2:?}"));
    }
}

#[test]
fn corrupt_states_are_refused() {
    let mut bad = FIXTURE.to_vec();
    bad[0] = b'X';
    assert!(statefile::decode(&bad).is_err(), "magic");
    let mut bad = FIXTURE.to_vec();
    bad[8] = 2;
    assert!(statefile::decode(&bad)
        .unwrap_err()
        .contains("incompatible"));
    let mut bad = FIXTURE.to_vec();
    bad[10] = 0xff;
    assert!(statefile::decode(&bad).unwrap_err().contains("newer"));
    assert!(
        statefile::decode(&FIXTURE[..FIXTURE.len() - 1]).is_err(),
        "truncated"
    );
    assert!(statefile::decode(&FIXTURE[..10]).is_err(), "short header");
    // Every single-byte change and every truncation of the payload: an
    // error or a state, never a panic; a state that decodes but names fds
    // that are not open is refused by the restore.
    let cfg = Rc::new(busbar::config::load(&busbar::cli::ConfigChoice::Session).unwrap());
    for fixture in [FIXTURE, FIXTURE_1_1] {
        flip_every_byte(fixture, &cfg);
    }
}

fn flip_every_byte(fixture: &[u8], cfg: &Rc<policy::Config>) {
    let h = statefile::HEADER_LEN;
    let spread = (fixture.len() - h) / 300 + 1;
    let positions = (h..fixture.len().min(h + 600)).chain((h..fixture.len()).step_by(spread));
    for i in positions {
        let mut b = fixture.to_vec();
        b[i] ^= 0x5a;
        if let Ok(s) = statefile::decode(&b) {
            let sasl = Rc::new(busbar::config::sasl_config(cfg, &s.bus.guid));
            // Only when none of its fds is open here (so the restore
            // cannot take one of this process's): it must refuse.
            let fds = s.bus.fds();
            let closed = |f: i32| nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_GETFD).is_err();
            if !fds.is_empty() && fds.iter().all(|&f| closed(f)) {
                assert!(
                    Bus::restore(s.bus, cfg.clone(), sasl, Default::default()).is_err(),
                    "byte {i}"
                );
            }
        }
    }
}
