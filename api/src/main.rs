//! `api`: the Dirt Free CRM server binary.

#[tokio::main]
async fn main() {
    std::process::exit(api::main_entry().await);
}
