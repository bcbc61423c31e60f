//! `probe ACTION [ARGS...]` tries one thing inside the sandbox and prints what
//! happened, so a test can assert both that a granted capability works and
//! that a withheld one is refused. Actions that misbehave on purpose (spin,
//! alloc, recurse, flood, fill) exercise the sandbox's bounds.
//!
//! Several actions can be chained with `&&`: `probe write /out/a x && read /out/a`.
//!
//! Exit status: 0 when every action worked, 1 when one was refused or failed
//! (with `error: ...` on stdout), 2 on bad usage.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let words: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    for action in words.split(|word| *word == "&&") {
        if let Err(message) = run(action) {
            println!("error: {message}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn run(words: &[&str]) -> Result<(), String> {
    match words {
        ["read", path] => {
            let contents = std::fs::read(path).map_err(describe)?;
            println!("read {} bytes", contents.len());
            Ok(())
        }
        ["cat", path] => {
            let contents = std::fs::read_to_string(path).map_err(describe)?;
            print!("{contents}");
            Ok(())
        }
        ["write", path, text] => std::fs::write(path, text).map_err(describe),
        // What `tr a-z A-Z < from > to` does, for benchmarks against make.
        ["upper", from, to] => {
            let contents = std::fs::read(from).map_err(describe)?;
            std::fs::write(to, contents.to_ascii_uppercase()).map_err(describe)
        }
        ["mkdir", path] => std::fs::create_dir_all(path).map_err(describe),
        ["list", path] => {
            let mut names: Vec<String> = std::fs::read_dir(path)
                .map_err(describe)?
                .map(|entry| entry.map(|entry| entry.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()
                .map_err(describe)?;
            names.sort();
            for name in names {
                println!("{name}");
            }
            Ok(())
        }
        ["env"] => {
            let mut variables: Vec<(String, String)> = std::env::vars().collect();
            variables.sort();
            for (key, value) in variables {
                println!("{key}={value}");
            }
            Ok(())
        }
        ["args", rest @ ..] => {
            for arg in rest {
                println!("{arg}");
            }
            Ok(())
        }
        ["argv", ..] => {
            for arg in std::env::args() {
                println!("{arg}");
            }
            Ok(())
        }
        ["cwd"] => {
            let cwd = std::env::current_dir().map_err(describe)?;
            println!("{}", cwd.display());
            Ok(())
        }
        ["connect", address] => {
            std::net::TcpStream::connect(address).map_err(describe)?;
            println!("connected to {address}");
            Ok(())
        }
        ["fetch", address] => {
            use std::io::Read;
            let mut stream = std::net::TcpStream::connect(address).map_err(describe)?;
            let mut body = String::new();
            stream.read_to_string(&mut body).map_err(describe)?;
            println!("{}", body.trim());
            if body.trim() == "ok" {
                Ok(())
            } else {
                Err(format!("the server answered `{}`", body.trim()))
            }
        }
        ["clock"] => {
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|error| error.to_string())?;
            let start = std::time::Instant::now();
            let elapsed = start.elapsed();
            println!("wall {}.{:09}", wall.as_secs(), wall.subsec_nanos());
            println!("monotonic step {}ns", elapsed.as_nanos());
            Ok(())
        }
        ["random"] => random(),
        ["random-file", path] => std::fs::write(path, random_bytes()?).map_err(describe),
        ["symlink", target, link] => symlink(target, link),
        ["exit", code] => {
            let code: i32 = code.parse().map_err(|_| format!("`{code}` is not an exit code"))?;
            std::process::exit(code)
        }
        ["spin"] => {
            let mut counter: u64 = 0;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        ["alloc", mebibytes] => {
            let mebibytes: usize = mebibytes
                .parse()
                .map_err(|_| format!("`{mebibytes}` is not a number"))?;
            let mut blocks = Vec::new();
            for _ in 0..mebibytes {
                // Touch every page so the memory is really committed.
                blocks.push(vec![1u8; 1 << 20]);
            }
            println!("allocated {} MiB", std::hint::black_box(blocks).len());
            Ok(())
        }
        ["recurse"] => {
            println!("depth {}", recurse(std::hint::black_box(1)));
            Ok(())
        }
        ["recurse-with-locals"] => {
            println!("depth {}", recurse_with_locals(std::hint::black_box(1)));
            Ok(())
        }
        ["flood", mebibytes] => {
            let mebibytes: u64 = mebibytes
                .parse()
                .map_err(|_| format!("`{mebibytes}` is not a number"))?;
            let line = format!("{}\n", "x".repeat(1023));
            let mut stdout = std::io::stdout().lock();
            for _ in 0..mebibytes * 1024 {
                stdout.write_all(line.as_bytes()).map_err(describe)?;
            }
            Ok(())
        }
        ["fill", path, mebibytes] => {
            let mebibytes: u64 = mebibytes
                .parse()
                .map_err(|_| format!("`{mebibytes}` is not a number"))?;
            let mut file = std::fs::File::create(path).map_err(describe)?;
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..mebibytes {
                file.write_all(&chunk).map_err(describe)?;
            }
            Ok(())
        }
        // Outputs with every kind of awkward name, for round-trip tests.
        ["awkward", dir] => awkward(dir),
        ["many", dir, count] => {
            let count: usize = count.parse().map_err(|_| format!("`{count}` is not a number"))?;
            for index in 0..count {
                let sub = format!("{dir}/{:03}", index / 1000);
                std::fs::create_dir_all(&sub).map_err(describe)?;
                std::fs::write(format!("{sub}/{index}.txt"), index.to_string()).map_err(describe)?;
            }
            Ok(())
        }
        ["sleep", milliseconds] => {
            let milliseconds: u64 = milliseconds
                .parse()
                .map_err(|_| format!("`{milliseconds}` is not a number"))?;
            std::thread::sleep(std::time::Duration::from_millis(milliseconds));
            Ok(())
        }
        ["panic", message] => panic!("{message}"),
        ["echo", text] => {
            println!("{text}");
            eprintln!("{text} (stderr)");
            Ok(())
        }
        _ => {
            eprintln!("usage: probe ACTION [ARGS...] (see the source for actions)");
            std::process::exit(2)
        }
    }
}

fn awkward(dir: &str) -> Result<(), String> {
    let long = "n".repeat(200);
    let files: [(&str, &[u8]); 8] = [
        ("with space.txt", b"space"),
        ("with\ttab.txt", b"tab"),
        ("with\nnewline.txt", b"newline"),
        ("unicode-\u{e9}\u{1d11e}\u{4e2d}.txt", "\u{e9}\u{1d11e}".as_bytes()),
        ("empty.txt", b""),
        ("binary.bin", &[0, 255, 10, 13, 0]),
        ("nested/deeper/still/file.txt", b"deep"),
        ("-dash and .dots..txt", b"dots"),
    ];
    for (name, contents) in files {
        let path = format!("{dir}/{name}");
        if let Some(parent) = std::path::Path::new(&path).parent() {
            std::fs::create_dir_all(parent).map_err(describe)?;
        }
        std::fs::write(&path, contents).map_err(describe)?;
    }
    std::fs::write(format!("{dir}/{long}"), "long name").map_err(describe)?;
    std::fs::create_dir_all(format!("{dir}/empty dir")).map_err(describe)?;
    std::fs::create_dir_all(format!("{dir}/nested/empty")).map_err(describe)?;
    symlink("with space.txt", &format!("{dir}/link to space"))?;
    symlink("../../empty.txt", &format!("{dir}/nested/deeper/up-link"))
}

/// `error kind: message`, so tests can match the kind of refusal.
fn describe(error: std::io::Error) -> String {
    format!("{:?}: {error}", error.kind())
}

/// Recursion whose frames live on the wasm call stack alone: overflows
/// wasmtime's stack limit.
#[allow(unconditional_recursion)] // overflowing the stack is the point
fn recurse(depth: u64) -> u64 {
    let next = recurse(std::hint::black_box(depth + 1));
    // Opaque to the optimizer, so the recursion cannot become a loop.
    std::hint::black_box(next) + 1
}

/// Recursion with an array per frame, which Rust keeps on the shadow stack in
/// linear memory: exhausts that stack before the wasm call stack.
#[allow(unconditional_recursion)] // overflowing the stack is the point
fn recurse_with_locals(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    frame[0] + recurse_with_locals(std::hint::black_box(depth + 1))
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn random() -> Result<(), String> {
    let secure = wasi::random::random::get_random_bytes(16);
    let insecure = wasi::random::insecure::get_insecure_random_bytes(16);
    let (seed_high, seed_low) = wasi::random::insecure_seed::insecure_seed();
    println!("secure {}", hex(&secure));
    println!("insecure {}", hex(&insecure));
    println!("seed {seed_high:016x}{seed_low:016x}");
    Ok(())
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn random_bytes() -> Result<Vec<u8>, String> {
    Ok(wasi::random::random::get_random_bytes(32))
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn random_bytes() -> Result<Vec<u8>, String> {
    Err("random needs WASI 0.2".into())
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn symlink(target: &str, link: &str) -> Result<(), String> {
    let relative = link
        .strip_prefix("/out/")
        .ok_or_else(|| format!("`{link}` is not under /out"))?;
    let (out, _) = wasi::filesystem::preopens::get_directories()
        .into_iter()
        .find(|(_, path)| path == "/out")
        .ok_or("no /out preopen")?;
    out.symlink_at(target, relative).map_err(|code| format!("{code:?}"))
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn random() -> Result<(), String> {
    Err("random needs WASI 0.2".into())
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn symlink(_target: &str, _link: &str) -> Result<(), String> {
    Err("symlink needs WASI 0.2".into())
}
