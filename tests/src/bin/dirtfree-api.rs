//! The server binary, built inside the tests crate so that integration tests
//! can start it as a separate process (`CARGO_BIN_EXE_dirtfree-api`).

#[tokio::main]
async fn main() {
    std::process::exit(api::main_entry().await);
}
