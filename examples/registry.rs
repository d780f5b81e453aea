//! Prints the registry of sources as JSON (see `mailhook::providers::registry`):
//! `cargo run --example registry > build/registry.json`.

fn main() {
    let registry = serde_json::json!({
        "version": mailhook::VERSION,
        "sources": mailhook::providers::registry::entries(),
    });
    println!("{}", serde_json::to_string_pretty(&registry).unwrap_or_default());
}
