//! `std:archive`: packs a folder the stage sees into `/out`, as a `tar.gz`
//! or a `zip` whose bytes depend on nothing but the files: entries sorted
//! by path, every time stamp the pinned clock's (`SOURCE_DATE_EPOCH`),
//! owners 0, modes 0644 (0755 for the files `with.executable` names), gzip
//! without a name or a time.
//!
//! `with` keys:
//! - `from`: the folder to pack, as the stage sees it (default `/src`, or
//!   the one `/in/<stage>` when the stage needs exactly one stage);
//! - `format`: `tar.gz` (default) or `zip`;
//! - `name`: the archive's file name under `/out` (default `archive.tar.gz`
//!   or `archive.zip`);
//! - `prefix`: a folder every entry is put under (`humanize-0.1.0`);
//! - `executable`: comma-separated paths, relative to `from`, packed 0755.
//!
//! Outputs: `file`, `entries`, `bytes` and `sha256` of the archive.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_sdk::{Invocation, Outcome, Stage, fs};
use sha2::{Digest as _, Sha256};

struct Archive;

/// The archive formats, by their `with.format` name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    TarGz,
    Zip,
}

impl Stage for Archive {
    fn run(invocation: Invocation) -> cairn_sdk::Result<Outcome> {
        let format = match invocation.config("format").unwrap_or("tar.gz") {
            "tar.gz" | "tgz" => Format::TarGz,
            "zip" => Format::Zip,
            other => return Err(format!("`with.format` is `{other}`: std:archive writes `tar.gz` or `zip`").into()),
        };
        let from = source_folder(&invocation)?;
        let name = invocation
            .config("name")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("archive.{}", if format == Format::Zip { "zip" } else { "tar.gz" }));
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(format!("`with.name` is `{name}`: name a file directly under /out").into());
        }
        let prefix = invocation.config("prefix").unwrap_or("").trim_matches('/').to_owned();
        let executable = invocation.list("executable");
        let files = fs::files_under(&from)?;
        let mut entries = Vec::with_capacity(files.len());
        for file in &files {
            let relative = file
                .strip_prefix(&from)
                .map_err(|_| format!("{} is not under {}", file.display(), from.display()))?
                .to_string_lossy()
                .into_owned();
            let mode = if executable.contains(&relative.as_str()) {
                0o755
            } else {
                0o644
            };
            let path = if prefix.is_empty() {
                relative
            } else {
                format!("{prefix}/{relative}")
            };
            entries.push((path, file.clone(), mode));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or(0);
        let bytes = match format {
            Format::TarGz => tar_gz(&entries, time)?,
            Format::Zip => zip(&entries, time)?,
        };
        std::fs::write(fs::out().join(&name), &bytes).map_err(|error| format!("writing /out/{name}: {error}"))?;
        let sha256 = hex(&Sha256::digest(&bytes));
        Ok(Outcome::new()
            .summary(format!(
                "{name}: {} file{}, {} bytes",
                entries.len(),
                if entries.len() == 1 { "" } else { "s" },
                bytes.len()
            ))
            .output("file", &name)
            .output("entries", entries.len())
            .output("bytes", bytes.len())
            .output("sha256", sha256))
    }
}

/// `with.from` (under `/src` or `/in`), or the stage's one input folder, or `/src`.
fn source_folder(invocation: &Invocation) -> cairn_sdk::Result<PathBuf> {
    if let Some(from) = invocation.config("from")
        && !(Path::new(from).starts_with(fs::SRC) || Path::new(from).starts_with(fs::INPUTS))
    {
        return Err(format!("`with.from` is `{from}`: pack a folder under /src or /in").into());
    }
    Ok(fs::chosen_folder(invocation.config("from"))?)
}

/// A ustar archive of `entries`, gzip-compressed with no name and no time.
fn tar_gz(entries: &[(String, PathBuf, u32)], time: u64) -> cairn_sdk::Result<Vec<u8>> {
    let encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    let mut builder = tar::Builder::new(encoder);
    builder.mode(tar::HeaderMode::Deterministic);
    for (path, file, mode) in entries {
        let contents = read(file)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(time);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, contents.as_slice())
            .map_err(|error| format!("packing {path}: {error}"))?;
    }
    let encoder = builder
        .into_inner()
        .map_err(|error| format!("finishing the archive: {error}"))?;
    Ok(encoder
        .finish()
        .map_err(|error| format!("compressing the archive: {error}"))?)
}

/// A zip of `entries`, deflated, every entry stamped with `time`.
fn zip(entries: &[(String, PathBuf, u32)], time: u64) -> cairn_sdk::Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stamp = zip_time(time);
    for (path, file, mode) in entries {
        let contents = read(file)?;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(stamp)
            .unix_permissions(*mode);
        writer
            .start_file(path.as_str(), options)
            .and_then(|()| writer.write_all(&contents).map_err(Into::into))
            .map_err(|error| format!("packing {path}: {error}"))?;
    }
    let cursor = writer
        .finish()
        .map_err(|error| format!("finishing the archive: {error}"))?;
    Ok(cursor.into_inner())
}

/// `time` as a zip (MS-DOS) time stamp, which starts in 1980.
fn zip_time(time: u64) -> zip::DateTime {
    let days = time / 86_400;
    let seconds = time % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    zip::DateTime::from_date_and_time(
        year.clamp(1980, 2107) as u16,
        month as u8,
        day as u8,
        (seconds / 3600) as u8,
        (seconds % 3600 / 60) as u8,
        (seconds % 60) as u8,
    )
    .unwrap_or_default()
}

/// The proleptic Gregorian date of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn read(file: &Path) -> cairn_sdk::Result<Vec<u8>> {
    std::fs::read(file).map_err(|error| format!("reading {}: {error}", file.display()).into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

cairn_sdk::export!(Archive);
