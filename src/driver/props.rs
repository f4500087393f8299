//! org.freedesktop.DBus.Properties and Introspectable.

use super::{bad_args, denied, errors, Call, Interface, Reply, INTERFACES};
use crate::broker::bus::{Bus, DBUS_PATH};
use crate::broker::security::Denied;
use crate::wire::marshal::Writer;

fn find_interface(name: &str) -> Result<&'static Interface, Denied> {
    // Properties are only implemented on the canonical path, where every
    // interface is available.
    INTERFACES.iter().find(|i| i.name == name).ok_or_else(|| {
        denied(
            errors::UNKNOWN_INTERFACE,
            format!("Interface \"{name}\" not found"),
        )
    })
}

fn find_property(i: &Interface, name: &str) -> Result<&'static str, Denied> {
    i.properties
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, sig)| *sig)
        .ok_or_else(|| {
            denied(
                errors::UNKNOWN_PROPERTY,
                format!("Property \"{}.{name}\" not found", i.name),
            )
        })
}

fn write_strings(w: &mut Writer, items: &[&str]) {
    let a = w.begin_array(4);
    for s in items {
        w.string(s);
    }
    w.end_array(a);
}

fn write_value(bus: &Bus, w: &mut Writer, prop: &str) {
    match prop {
        "Features" => {
            let mut f = vec!["ActivatableServicesChanged", "HeaderFiltering"];
            if bus.systemd_activation() {
                f.push("SystemdActivation");
            }
            write_strings(w, &f);
        }
        _ => {
            let names: Vec<&str> = INTERFACES
                .iter()
                .filter(|i| i.interesting)
                .map(|i| i.name)
                .collect();
            write_strings(w, &names);
        }
    }
}

pub(super) fn get(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let mut r = c.args();
    let iface = r.string().map_err(bad_args)?;
    let prop = r.string().map_err(bad_args)?;
    let i = find_interface(iface)?;
    let sig = find_property(i, prop)?;
    let mut w = Writer::new();
    w.variant(sig);
    write_value(bus, &mut w, prop);
    Ok(Reply::Body("v", w.into_bytes()))
}

pub(super) fn get_all(bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let iface = c.args().string().map_err(bad_args)?;
    let i = find_interface(iface)?;
    let mut w = Writer::new();
    let a = w.begin_array(8);
    for (name, sig) in i.properties {
        w.begin_struct();
        w.string(name);
        w.variant(sig);
        write_value(bus, &mut w, name);
    }
    w.end_array(a);
    Ok(Reply::Body("a{sv}", w.into_bytes()))
}

pub(super) fn set(_bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let mut r = c.args();
    let iface = r.string().map_err(bad_args)?;
    let prop = r.string().map_err(bad_args)?;
    let i = find_interface(iface)?;
    find_property(i, prop)?;
    Err(denied(
        errors::PROPERTY_READ_ONLY,
        format!("Property '{iface}.{prop}' cannot be set"),
    ))
}

fn split_types(sig: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut s = sig;
    while !s.is_empty() {
        let n = crate::wire::signature::single_type_len(s.as_bytes()).unwrap_or(s.len());
        let (t, rest) = s.split_at(n);
        out.push(t);
        s = rest;
    }
    out
}

/// The introspection XML for `path`, in dbus-daemon's shape.
pub fn introspect_xml(path: &str) -> String {
    let canonical = path == DBUS_PATH;
    let mut x = String::from(
        "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n\"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<node>\n",
    );
    for i in INTERFACES {
        if !(canonical || i.any_path) {
            continue;
        }
        x.push_str(&format!("  <interface name=\"{}\">\n", i.name));
        for m in i.methods {
            x.push_str(&format!("    <method name=\"{}\">\n", m.name));
            for t in split_types(m.input) {
                x.push_str(&format!("      <arg direction=\"in\" type=\"{t}\"/>\n"));
            }
            for t in split_types(m.output) {
                x.push_str(&format!("      <arg direction=\"out\" type=\"{t}\"/>\n"));
            }
            x.push_str("    </method>\n");
        }
        for (name, sig) in i.properties {
            x.push_str(&format!(
                "    <property name=\"{name}\" type=\"{sig}\" access=\"read\">\n      <annotation name=\"org.freedesktop.DBus.Property.EmitsChangedSignal\" value=\"const\"/>\n    </property>\n"
            ));
        }
        x.push_str(i.extra);
        x.push_str("  </interface>\n");
    }
    match path {
        "/" => x.push_str("  <node name=\"org/freedesktop/DBus\"/>\n"),
        "/org" => x.push_str("  <node name=\"freedesktop/DBus\"/>\n"),
        "/org/freedesktop" => x.push_str("  <node name=\"DBus\"/>\n"),
        _ => {}
    }
    x.push_str("</node>\n");
    x
}

pub(super) fn introspect(_bus: &mut Bus, c: &Call<'_>) -> Result<Reply, Denied> {
    let mut w = Writer::new();
    w.string(&introspect_xml(c.path()));
    Ok(Reply::Body("s", w.into_bytes()))
}
