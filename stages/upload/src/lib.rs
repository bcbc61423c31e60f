//! `std:upload`: the generic deploy. Sends the files of a folder (`/src`,
//! or the one `/in/<stage>` when the stage needs exactly one; `with.from`
//! picks another) to an HTTP endpoint: artifact servers, WebDAV, presigned
//! object-store URLs.
//!
//! `with` keys:
//! - `url` (required): with `mode = "put"` (the default), the base URL each
//!   file is PUT under (`{url}/{relative path}`); with `mode = "multipart"`,
//!   the URL one `multipart/form-data` POST goes to, a `file` part per file
//!   named by its relative path;
//! - `headers`: `Name: value` lines added to every request (a credential
//!   belongs in `http_auth`, where the stage never sees it).
//!
//! Every request must answer 2xx. Writes `/out/uploaded.json` (each file's
//! path, URL, size, sha256 and status); outputs `files`, `bytes` and
//! `manifest_sha256` (the digest of that manifest).

use std::path::{Path, PathBuf};

use cairn_sdk::http::{Request, header_lines};
use cairn_sdk::{Invocation, Outcome, Stage, fs};
use sha2::{Digest as _, Sha256};

struct Upload;

/// One file to send.
struct File {
    relative: String,
    path: PathBuf,
    size: u64,
    sha256: String,
}

impl Stage for Upload {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let url = invocation
            .config("url")
            .ok_or("std:upload needs `with = { url = \"https://...\" }`")?
            .trim_end_matches('/');
        let from = fs::chosen_folder(invocation.config("from"))?;
        let headers = header_lines(invocation.config("headers").unwrap_or_default())?;
        let files = read_files(&from)?;
        if files.is_empty() {
            return Err(format!("there is nothing to upload in {}", from.display()).into());
        }
        let records = match invocation.config("mode").unwrap_or("put") {
            "put" => put_each(url, &headers, &files)?,
            "multipart" => post_multipart(url, &headers, &files)?,
            other => return Err(format!("`mode` `{other}` is not `put` or `multipart`").into()),
        };
        let manifest = serde_json::to_vec_pretty(&serde_json::Value::Array(records))?;
        std::fs::write(fs::out().join("uploaded.json"), &manifest)?;
        let bytes: u64 = files.iter().map(|file| file.size).sum();
        Ok(Outcome::new()
            .summary(format!(
                "{} file{} ({bytes} bytes) uploaded to {url}",
                files.len(),
                if files.len() == 1 { "" } else { "s" }
            ))
            .output("files", files.len())
            .output("bytes", bytes)
            .output("manifest_sha256", hex(&Sha256::digest(&manifest))))
    }
}

fn read_files(from: &Path) -> cairn_sdk::Result<Vec<File>> {
    fs::files_under(from)?
        .into_iter()
        .map(|path| {
            // Digested in chunks: an artifact may be larger than the
            // stage's memory, and `put` streams it from the file too.
            let unreadable = |error: std::io::Error| format!("reading {}: {error}", path.display());
            let mut file = std::fs::File::open(&path).map_err(unreadable)?;
            let mut digest = Sha256::new();
            let size = std::io::copy(&mut file, &mut digest).map_err(unreadable)?;
            let relative = path.strip_prefix(from).unwrap_or(&path).to_string_lossy().into_owned();
            Ok(File {
                relative,
                sha256: hex(&digest.finalize()),
                size,
                path,
            })
        })
        .collect()
}

fn put_each(url: &str, headers: &[(String, String)], files: &[File]) -> cairn_sdk::Result<Vec<serde_json::Value>> {
    let mut records = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let target = format!("{url}/{}", encode_path(&file.relative));
        let request = Request::put(&target)
            .header("content-type", "application/octet-stream")
            .body_file(&file.path)
            .map_err(|error| format!("reading {}: {error}", file.path.display()))?;
        let status = send(request, headers, &format!("uploading {} to {target}", file.relative))?;
        cairn_sdk::info!("{} → {target} ({status})", file.relative);
        cairn_sdk::progress(index as u64 + 1, files.len() as u64);
        records.push(record(file, &target, status));
    }
    Ok(records)
}

fn post_multipart(
    url: &str,
    headers: &[(String, String)],
    files: &[File],
) -> cairn_sdk::Result<Vec<serde_json::Value>> {
    // The boundary is derived from the contents, so the same files make the
    // same request; 128 bits of their digest do not occur in them by chance.
    // (The form is built in memory: `put` is the mode for large artifacts.)
    let mut digest = Sha256::new();
    for file in files {
        digest.update(file.relative.as_bytes());
        digest.update(file.sha256.as_bytes());
    }
    let boundary = format!("cairn-{}", &hex(&digest.finalize())[..32]);
    let mut body = Vec::new();
    for file in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
                 content-type: application/octet-stream\r\n\r\n",
                file.relative.replace('"', "%22")
            )
            .as_bytes(),
        );
        body.extend_from_slice(
            &std::fs::read(&file.path).map_err(|error| format!("reading {}: {error}", file.path.display()))?,
        );
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let request = Request::post(url)
        .header("content-type", &format!("multipart/form-data; boundary={boundary}"))
        .body(body);
    let status = send(request, headers, &format!("uploading {} files to {url}", files.len()))?;
    cairn_sdk::info!("{} files → {url} ({status})", files.len());
    Ok(files.iter().map(|file| record(file, url, status)).collect())
}

/// Sends `request` with the extra `headers`; anything but a 2xx answer is
/// an error saying what was `doing` and what the server answered.
fn send(mut request: Request, headers: &[(String, String)], doing: &str) -> cairn_sdk::Result<u16> {
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send()?;
    if !response.is_success() {
        return Err(format!(
            "{doing}: the server answered {}: {}",
            response.status,
            response.text().trim()
        )
        .into());
    }
    Ok(response.status)
}

fn record(file: &File, url: &str, status: u16) -> serde_json::Value {
    serde_json::json!({
        "path": file.relative,
        "url": url,
        "size": file.size,
        "sha256": file.sha256,
        "status": status,
    })
}

/// A relative path as a URL path: each segment percent-encoded but for the
/// characters that are safe in one.
fn encode_path(relative: &str) -> String {
    let mut encoded = String::new();
    for byte in relative.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => encoded.push(byte as char),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

cairn_sdk::export!(Upload);
