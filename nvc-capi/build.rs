//! Links the shared library as libnvidia-container's: SONAME `libnvidia-container.so.1`, the
//! `nvc_*` symbols under upstream's version node `NVC_1.0` and nothing else exported.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnvidia-container.so.1");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/libnvidia-container.ver");
    println!("cargo:rerun-if-changed=libnvidia-container.ver");
}
