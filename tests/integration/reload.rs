//! ReloadConfig and SIGHUP: a good configuration takes effect for existing
//! connections, service directories are re-read, and a bad one is refused
//! while the bus keeps running on the old one.

use crate::common;

use std::fs;

use common::*;

const ALLOW_ALL: &str = r#"<policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>"#;

fn write_config(bus: &Bus, policy: &str, extra: &str) {
    let text = format!(
        "<busconfig>\n  <type>session</type>\n  <listen>unix:path={}</listen>\n  \
         <auth>EXTERNAL</auth>\n  {policy}\n  {extra}\n</busconfig>\n",
        bus.dir.join("bus_socket").display()
    );
    fs::write(bus.dir.join("bus.conf"), text).unwrap();
}

fn reload(c: &mut Client) -> Msg {
    c.call_driver("ReloadConfig", "", Vec::new())
}

#[test]
fn reload_applies_new_policy_to_existing_connections() {
    let bus = Bus::start();
    let mut c = Client::connect(&bus);
    assert_eq!(c.request_name("com.example.Before", 0), 1);
    // Same allow-all policy, plus a mandatory deny on owning one name.
    write_config(
        &bus,
        &format!(
            "{ALLOW_ALL}\n  <policy context=\"mandatory\"><deny own=\"com.example.Forbidden\"/></policy>"
        ),
        "",
    );
    let r = reload(&mut c);
    assert_eq!(
        r.msg_type, METHOD_RETURN,
        "reload failed: {:?}",
        r.error_name
    );
    let mut w = W::new();
    w.str("com.example.Forbidden").u32(0);
    let reply = c.call_driver("RequestName", "su", w.buf);
    assert_eq!(reply.msg_type, ERROR);
    assert_eq!(
        reply.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.AccessDenied")
    );
    // Other names are still fine.
    assert_eq!(c.request_name("com.example.After", 0), 1);
}

#[test]
fn failed_reload_keeps_the_running_configuration() {
    let mut bus = Bus::start_with("<limit name=\"max_names_per_connection\">3</limit>");
    let mut c = Client::connect(&bus);
    fs::write(bus.dir.join("bus.conf"), "<busconfig><bees/></busconfig>").unwrap();
    let r = reload(&mut c);
    assert_eq!(r.msg_type, ERROR);
    assert_eq!(
        r.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.Failed")
    );
    let text = r.arg0_str();
    assert!(text.contains("bees"), "error does not say why: {text}");
    // Still running, with the old limit (unique name + 2 names).
    assert_eq!(c.request_name("com.example.A", 0), 1);
    assert_eq!(c.request_name("com.example.B", 0), 1);
    let mut w = W::new();
    w.str("com.example.C").u32(0);
    let reply = c.call_driver("RequestName", "su", w.buf);
    assert_eq!(
        reply.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.LimitsExceeded")
    );
    // SIGHUP with the same broken file: the bus survives and keeps serving.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bus.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let mut d = Client::connect(&bus);
    assert_eq!(d.get_id().len(), 32);
    assert!(bus.is_alive());
}

#[test]
fn sighup_reloads_the_configuration() {
    let mut bus = Bus::start();
    let mut c = Client::connect(&bus);
    write_config(
        &bus,
        &format!(
            "{ALLOW_ALL}\n  <policy context=\"mandatory\"><deny own=\"com.example.Hup\"/></policy>"
        ),
        "",
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bus.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    // The reload happens in the daemon's loop; poll until it shows.
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let mut w = W::new();
        w.str("com.example.Hup").u32(4);
        let reply = c.call_driver("RequestName", "su", w.buf);
        if reply.msg_type == ERROR {
            assert_eq!(
                reply.error_name.as_deref(),
                Some("org.freedesktop.DBus.Error.AccessDenied")
            );
            break;
        }
        assert_eq!(c.release_name("com.example.Hup"), 1);
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(bus.is_alive());
}

#[test]
fn reload_rereads_service_directories() {
    let bus = Bus::start();
    let services = bus.dir.join("services");
    fs::create_dir_all(&services).unwrap();
    write_config(
        &bus,
        ALLOW_ALL,
        &format!("<servicedir>{}</servicedir>", services.display()),
    );
    let mut c = Client::connect(&bus);
    assert_eq!(reload(&mut c).msg_type, METHOD_RETURN);
    let names = |c: &mut Client| {
        let m = c.call_driver("ListActivatableNames", "", Vec::new());
        m.reader().str_array()
    };
    assert!(!names(&mut c).contains(&"com.example.Activatable".to_string()));
    fs::write(
        services.join("com.example.Activatable.service"),
        "[D-BUS Service]\nName=com.example.Activatable\nExec=/bin/true\n",
    )
    .unwrap();
    assert_eq!(reload(&mut c).msg_type, METHOD_RETURN);
    assert!(names(&mut c).contains(&"com.example.Activatable".to_string()));
}
