//! `replay-tools`, built inside the tests crate so that integration tests can run it as a
//! separate process (`CARGO_BIN_EXE_dirtfree-replay-tools`), as an operator would.

#[tokio::main]
async fn main() {
    std::process::exit(replay_tools::main_entry().await);
}
