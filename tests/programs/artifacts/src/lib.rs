//! The guest programs the tests run, built for WebAssembly by this crate's
//! build script. Each constant is the path of one `.wasm` file.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
