//! DBUS_COOKIE_SHA1 keyrings: ~/.dbus-keyrings/<context>, in dbus-daemon's
//! file format and with its rules (directory mode 0700, lock file, key
//! expiry and creation).
