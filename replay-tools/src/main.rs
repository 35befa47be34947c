//! `replay-tools`: the operator's view of the event log (see the library).

#[tokio::main]
async fn main() {
    std::process::exit(replay_tools::main_entry().await);
}
