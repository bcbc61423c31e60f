//! `std:sbom`: a CycloneDX 1.5 JSON bill of materials of the dependencies
//! the lock files under `/src` pin: `Cargo.lock`, `package-lock.json`
//! (lockfile versions 1 to 3), `requirements.txt` (pinned with `==`, with
//! pip's `--hash` options) and `poetry.lock`.
//!
//! Writes `/out/sbom.cdx.json`: components sorted by package URL, with
//! their hashes when the lock file records them, each naming the lock file
//! it came from; no timestamp, and a serial number derived from the
//! contents, so the same lock files give the same bytes. A requirement not
//! pinned to one version is a warning at its line. `with.name` and
//! `with.version` describe the software the bill is for (default: the
//! stage's name). Outputs: `components`, `sha256` (of the file).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use cairn_sdk::{Annotation, Invocation, Outcome, Stage, fs};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

struct Sbom;

/// One dependency.
struct Component {
    ecosystem: &'static str,
    name: String,
    version: String,
    /// `(algorithm, hex)`, CycloneDX's names (`SHA-256`, `SHA-512`).
    hashes: Vec<(&'static str, String)>,
    source: String,
}

impl Component {
    fn purl(&self) -> String {
        let name = match self.ecosystem {
            // A scope's `@` is encoded in a package URL.
            "npm" => self.name.replace('@', "%40"),
            "pypi" => self.name.to_ascii_lowercase().replace('_', "-"),
            _ => self.name.clone(),
        };
        if self.version.is_empty() {
            format!("pkg:{}/{name}", self.ecosystem)
        } else {
            format!("pkg:{}/{name}@{}", self.ecosystem, self.version)
        }
    }

    fn to_json(&self) -> Value {
        let mut component = json!({
            "type": "library",
            "bom-ref": self.purl(),
            "name": self.name,
            "purl": self.purl(),
            "properties": [{ "name": "cairn:lockfile", "value": self.source }],
        });
        if !self.version.is_empty() {
            component["version"] = self.version.clone().into();
        }
        if !self.hashes.is_empty() {
            component["hashes"] = self
                .hashes
                .iter()
                .map(|(alg, content)| json!({ "alg": alg, "content": content }))
                .collect();
        }
        component
    }
}

impl Stage for Sbom {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let mut components = Vec::new();
        let mut lockfiles = Vec::new();
        for path in fs::files_under(fs::src())? {
            let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            let reader: fn(&Path, &str) -> cairn_sdk::Result<Vec<Component>> = match name {
                "Cargo.lock" => cargo,
                "package-lock.json" => npm,
                "requirements.txt" => requirements,
                "poetry.lock" => poetry,
                _ => continue,
            };
            let text =
                std::fs::read_to_string(&path).map_err(|error| format!("reading {}: {error}", path.display()))?;
            let found = reader(&path, &text).map_err(|error| format!("{}: {error}", path.display()))?;
            cairn_sdk::info!("{}: {} components", path.display(), found.len());
            lockfiles.push(path.display().to_string());
            components.extend(found);
        }
        if lockfiles.is_empty() {
            return Err(
                "no lock file in /src: list Cargo.lock, package-lock.json, requirements.txt or poetry.lock in `inputs`"
                    .into(),
            );
        }
        let mut by_purl: BTreeMap<String, Value> = BTreeMap::new();
        for component in &components {
            by_purl.entry(component.purl()).or_insert_with(|| component.to_json());
        }
        let listed: Vec<Value> = by_purl.into_values().collect();
        let serial = uuid_from(&Sha256::digest(serde_json::to_vec(&listed)?));
        let mut subject =
            json!({ "type": "application", "name": invocation.config("name").unwrap_or(&invocation.stage) });
        if let Some(version) = invocation.config("version") {
            subject["version"] = version.into();
        }
        let bom = json!({
            "bomFormat": "CycloneDX",
            "specVersion": "1.5",
            "serialNumber": format!("urn:uuid:{serial}"),
            "version": 1,
            "metadata": {
                "tools": { "components": [{ "type": "application", "name": "cairn std:sbom", "version": env!("CARGO_PKG_VERSION") }] },
                "component": subject,
            },
            "components": listed,
        });
        let mut bytes = serde_json::to_vec_pretty(&bom)?;
        bytes.push(b'\n');
        std::fs::write(fs::out().join("sbom.cdx.json"), &bytes)?;
        let count = bom["components"].as_array().map_or(0, Vec::len);
        Ok(Outcome::new()
            .summary(format!("{count} components from {}", lockfiles.join(", ")))
            .output("components", count)
            .output("sha256", hex(&Sha256::digest(&bytes))))
    }
}

fn cargo(path: &Path, text: &str) -> cairn_sdk::Result<Vec<Component>> {
    let packages = toml_packages(text)?;
    Ok(packages
        .iter()
        // Packages without a source are the workspace's own.
        .filter(|package| package.get("source").is_some())
        .map(|package| Component {
            ecosystem: "cargo",
            name: string(package, "name"),
            version: string(package, "version"),
            hashes: package
                .get("checksum")
                .and_then(toml::Value::as_str)
                .map(|checksum| vec![("SHA-256", checksum.to_owned())])
                .unwrap_or_default(),
            source: path.display().to_string(),
        })
        .collect())
}

fn npm(path: &Path, text: &str) -> cairn_sdk::Result<Vec<Component>> {
    let lock: Value = serde_json::from_str(text)?;
    let mut found = Vec::new();
    let component = |name: &str, entry: &Value| Component {
        ecosystem: "npm",
        name: name.to_owned(),
        version: entry["version"].as_str().unwrap_or_default().to_owned(),
        hashes: entry["integrity"].as_str().and_then(integrity).into_iter().collect(),
        source: path.display().to_string(),
    };
    if let Some(packages) = lock["packages"].as_object() {
        for (key, entry) in packages {
            // "" is the project itself; links point at workspace folders.
            if key.is_empty() || entry["link"].as_bool() == Some(true) {
                continue;
            }
            let name = key.rsplit("node_modules/").next().unwrap_or(key);
            found.push(component(entry["name"].as_str().unwrap_or(name), entry));
        }
    } else {
        fn walk(dependencies: &Value, found: &mut Vec<(String, Value)>) {
            if let Some(map) = dependencies.as_object() {
                for (name, entry) in map {
                    found.push((name.clone(), entry.clone()));
                    walk(&entry["dependencies"], found);
                }
            }
        }
        let mut entries = Vec::new();
        walk(&lock["dependencies"], &mut entries);
        found.extend(entries.iter().map(|(name, entry)| component(name, entry)));
    }
    Ok(found)
}

/// An npm `integrity` (`sha512-BASE64`) as CycloneDX's algorithm and hex.
fn integrity(text: &str) -> Option<(&'static str, String)> {
    let (algorithm, digest) = text.split_whitespace().next()?.split_once('-')?;
    let algorithm = match algorithm {
        "sha512" => "SHA-512",
        "sha384" => "SHA-384",
        "sha256" => "SHA-256",
        "sha1" => "SHA-1",
        _ => return None,
    };
    let bytes = base64::engine::general_purpose::STANDARD.decode(digest).ok()?;
    Some((algorithm, hex(&bytes)))
}

fn requirements(path: &Path, text: &str) -> cairn_sdk::Result<Vec<Component>> {
    let mut found = Vec::new();
    // pip-compile continues a requirement over lines ending in `\`.
    let mut logical: Vec<(u32, String)> = Vec::new();
    let mut continuing = false;
    for (index, line) in text.lines().enumerate() {
        let line = line.split(" #").next().unwrap_or_default();
        let (content, continues) = match line.trim_end().strip_suffix('\\') {
            Some(content) => (content, true),
            None => (line, false),
        };
        match (continuing, logical.last_mut()) {
            (true, Some((_, previous))) => {
                previous.push(' ');
                previous.push_str(content.trim());
            }
            _ => logical.push((index as u32 + 1, content.trim().to_owned())),
        }
        continuing = continues;
    }
    for (line, requirement) in logical {
        if requirement.is_empty() || requirement.starts_with('#') || requirement.starts_with('-') {
            continue;
        }
        let mut words = requirement.split_whitespace();
        let specifier = words.next().unwrap_or_default().split(';').next().unwrap_or_default();
        let hashes = words
            .filter_map(|word| word.strip_prefix("--hash=sha256:"))
            .map(|digest| ("SHA-256", digest.to_owned()))
            .collect();
        let (name, version) = match specifier.split_once("==") {
            Some((name, version)) => (name, version.to_owned()),
            None => {
                let name = specifier
                    .split(['<', '>', '=', '!', '~', '['])
                    .next()
                    .unwrap_or(specifier);
                cairn_sdk::annotate(Annotation::warning(
                    path.to_string_lossy(),
                    line,
                    format!("`{specifier}` is not pinned to one version: the bill lists it without one"),
                ));
                (name, String::new())
            }
        };
        let name = name.split('[').next().unwrap_or(name);
        found.push(Component {
            ecosystem: "pypi",
            name: name.to_owned(),
            version,
            hashes,
            source: path.display().to_string(),
        });
    }
    Ok(found)
}

fn poetry(path: &Path, text: &str) -> cairn_sdk::Result<Vec<Component>> {
    let packages = toml_packages(text)?;
    Ok(packages
        .iter()
        .map(|package| Component {
            ecosystem: "pypi",
            name: string(package, "name"),
            version: string(package, "version"),
            hashes: package
                .get("files")
                .and_then(toml::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|file| file.get("hash")?.as_str()?.strip_prefix("sha256:"))
                .map(|digest| ("SHA-256", digest.to_owned()))
                .collect(),
            source: path.display().to_string(),
        })
        .collect())
}

/// The `[[package]]` tables of a TOML lock file (Cargo's and Poetry's).
fn toml_packages(text: &str) -> cairn_sdk::Result<Vec<toml::Value>> {
    let lock: toml::Table = text.parse()?;
    Ok(lock
        .get("package")
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default())
}

fn string(value: &toml::Value, key: &str) -> String {
    value
        .get(key)
        .and_then(toml::Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A UUID-shaped serial (version 8: custom) from a digest.
fn uuid_from(digest: &[u8]) -> String {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

cairn_sdk::export!(Sbom);
