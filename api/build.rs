//! Records the git commit the server was built from, for `/api/version`.
use std::process::Command;

fn main() {
    let build = std::env::var("DIRTFREE_BUILD").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    });
    println!(
        "cargo:rustc-env=DIRTFREE_BUILD={}",
        build.unwrap_or_else(|| "unknown".into())
    );
    println!("cargo:rerun-if-env-changed=DIRTFREE_BUILD");
    println!("cargo:rerun-if-changed=../.git/HEAD");
}
