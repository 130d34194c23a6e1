//! Records the target triple for `version` and `open_cowork_gateway_build_info`.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=OPEN_COWORK_GATEWAY_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
