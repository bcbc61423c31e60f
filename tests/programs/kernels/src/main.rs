//! `kernels sieve N`: the primes below N by the sieve of Eratosthenes, and
//! an FNV-1a hash over them. `kernels json N`: N records written as JSON,
//! parsed back, and summed. Each prints one line with its result, so the
//! benchmark can check the wasm and native builds computed the same thing.
//!
//! Plain scalar Rust on purpose: the same source compiles to the same
//! algorithm on both targets (no SIMD the wasm build lacks), so the
//! difference measured is the engine's.

use std::fmt::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [kernel, size] => size.parse::<usize>().ok().map(|size| (kernel.as_str(), size)),
        _ => None,
    };
    let result = match parsed {
        Some(("sieve", limit)) => sieve(limit),
        Some(("json", records)) => json(records),
        _ => {
            eprintln!("usage: kernels sieve|json SIZE");
            return ExitCode::from(2);
        }
    };
    println!("{}: {result:016x}", args.join(" "));
    ExitCode::SUCCESS
}

/// The primes below `limit`, hashed.
fn sieve(limit: usize) -> u64 {
    let mut composite = vec![false; limit];
    let mut candidate = 2;
    while candidate * candidate < limit {
        if !composite[candidate] {
            let mut multiple = candidate * candidate;
            while multiple < limit {
                composite[multiple] = true;
                multiple += candidate;
            }
        }
        candidate += 1;
    }
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for (number, _) in composite
        .iter()
        .enumerate()
        .skip(2)
        .filter(|(_, composite)| !**composite)
    {
        hash ^= number as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// `records` stage-like records as a JSON array, parsed back and summed.
fn json(records: usize) -> u64 {
    let mut text = String::from("[");
    for index in 0..records {
        if index > 0 {
            text.push(',');
        }
        let _ = write!(
            text,
            r#"{{"id":{index},"name":"stage-{index}","tags":["build","test","deploy"],"weight":{}.25,"cached":{}}}"#,
            index % 97,
            index % 3 == 0
        );
    }
    text.push(']');
    let Ok(serde_json::Value::Array(parsed)) = serde_json::from_str::<serde_json::Value>(&text) else {
        return 0;
    };
    parsed.iter().fold(0u64, |sum, record| {
        let id = record["id"].as_u64().unwrap_or(0);
        let weight = record["weight"].as_f64().unwrap_or(0.0) as u64;
        let tags = record["tags"].as_array().map_or(0, Vec::len) as u64;
        let cached = u64::from(record["cached"].as_bool().unwrap_or(false));
        let name = record["name"].as_str().map_or(0, str::len) as u64;
        sum.wrapping_mul(31).wrapping_add(id + weight + tags + cached + name)
    })
}
