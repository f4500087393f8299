/* busbar: libselinux's log callback is variadic (int type, const char *fmt,
 * ...), which stable Rust cannot define. This shim formats the message and
 * hands the finished text to busbar_mac_selinux_log (src/mac/selinux.rs).
 * It needs no libselinux header: only the callback's C signature. */
#include <stdarg.h>
#include <stdio.h>

extern void busbar_mac_selinux_log(int type, const char *msg);

int busbar_mac_selinux_log_cb(int type, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    busbar_mac_selinux_log(type, buf);
    return 0;
}
