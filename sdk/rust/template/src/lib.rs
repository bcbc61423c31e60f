//! {{name}}: a cairn stage in Rust.

use cairn_sdk::{Invocation, Outcome, Stage, fs};

struct Hello;

impl Stage for Hello {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let files = fs::files_under(fs::src())?;
        let listing: String = files.iter().map(|file| format!("{}\n", file.display())).collect();
        std::fs::write(fs::out().join("files.txt"), listing)?;
        cairn_sdk::info!("hello from {}, written in Rust: {} files in /src", invocation.stage, files.len());
        Ok(Outcome::new()
            .summary(format!("{} files in /src", files.len()))
            .output("files", files.len()))
    }
}

cairn_sdk::export!(Hello);
