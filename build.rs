//! Compiles the one C function busbar needs: libselinux's variadic log
//! callback (src/mac/selinux_log.c), which stable Rust cannot define.

fn main() {
    println!("cargo:rerun-if-changed=src/mac/selinux_log.c");
    cc::Build::new()
        .file("src/mac/selinux_log.c")
        .warnings(true)
        .compile("busbar_selinux_log");
}
