fn main() {
    let cfg = policy::load_file(std::path::Path::new("/usr/share/dbus-1/session.conf")).unwrap();
    let cp = cfg.policy.for_connection(Some(0), &[0], false);
    let m = policy::MessageFacts { msg_type: 4, path: Some("/org/freedesktop/DBus"), interface: Some("org.freedesktop.DBus"), member: Some("NameAcquired"), error_name: None, destination: Some(":1.2"), unix_fds: 0, reply_serial: None };
    for e in [false, true] {
        println!("recv eav={e}: {:?}", cp.can_receive(&m, &["org.freedesktop.DBus"], false, e));
        println!("send eav={e}: {:?}", cp.can_send(&m, &[":1.2"], false, e));
    }
    println!("{:#?}", cfg.policy.rules());
}
