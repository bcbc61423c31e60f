//! The remembered digest of each workspace file, as one flat table used
//! where it lies in the state file: every run looks up every input file in
//! it, so it is never decoded into a list or a map.
//!
//! Layout, little-endian: the number of records (`u32`); that many records
//! of [`RECORD`] bytes (where the record's path ends in the path area, `u32`;
//! the stamp's size, modification time, change time, inode and mode; the
//! digest); then the paths, one after another, sorted. A damaged table is
//! never trusted beyond its bounds: a record whose path cannot be read is
//! not found, so its file is hashed again.

use crate::workspace::Stamp;
use cairn_core::Digest;

/// A remembered file digest, with the stamp the file had when hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// The file's stamp then.
    pub stamp: Stamp,
    /// Its contents' digest.
    pub digest: Digest,
}

/// Bytes per record: path end, size, modified, changed, inode, mode, digest.
const RECORD: usize = 4 + 8 + 8 + 8 + 8 + 4 + 32;

/// A table of file records, borrowed from its encoding.
#[derive(Clone, Copy)]
pub struct FileTable<'a> {
    records: &'a [u8],
    paths: &'a [u8],
}

impl<'a> FileTable<'a> {
    /// The table encoded in `bytes`; empty if `bytes` cannot hold one.
    pub fn parse(bytes: &'a [u8]) -> Self {
        let empty = Self {
            records: &[],
            paths: &[],
        };
        let Some((count, rest)) = bytes.split_first_chunk::<4>() else {
            return empty;
        };
        let Some(length) = (u32::from_le_bytes(*count) as usize).checked_mul(RECORD) else {
            return empty;
        };
        if rest.len() < length {
            return empty;
        }
        let (records, paths) = rest.split_at(length);
        Self { records, paths }
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.records.len() / RECORD
    }

    /// The path of record `index`, if the table is sound there.
    pub fn path(&self, index: usize) -> Option<&'a [u8]> {
        let start = match index {
            0 => 0,
            _ => self.path_end(index - 1)?,
        };
        self.paths.get(start..self.path_end(index)?)
    }

    /// Record `index`.
    pub fn record(&self, index: usize) -> Option<FileRecord> {
        let bytes: &[u8; RECORD] = self
            .records
            .get(index * RECORD..(index + 1) * RECORD)?
            .try_into()
            .ok()?;
        let stamp = Stamp {
            size: u64::from_le_bytes(field(bytes, 4)),
            modified: i64::from_le_bytes(field(bytes, 12)),
            changed: i64::from_le_bytes(field(bytes, 20)),
            inode: u64::from_le_bytes(field(bytes, 28)),
            mode: u32::from_le_bytes(field(bytes, 36)),
        };
        Some(FileRecord {
            stamp,
            digest: Digest::from_bytes(field(bytes, 40)),
        })
    }

    /// The index of the first record whose path is not before `path`
    /// (records are sorted by path; one that cannot be read sorts first).
    pub fn seek(&self, path: &str) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = low + (high - low) / 2;
            if self.path(middle).unwrap_or_default() < path.as_bytes() {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// The record for `path` at or after `from`, and where to search from
    /// for the next path in order: looking up sorted paths one after
    /// another walks the table once.
    pub fn find(&self, from: usize, path: &str) -> (usize, Option<FileRecord>) {
        let mut index = from;
        while index < self.len() && self.path(index).is_some_and(|at| at < path.as_bytes()) {
            index += 1;
        }
        let found = (self.path(index) == Some(path.as_bytes()))
            .then(|| self.record(index))
            .flatten();
        (index, found)
    }

    /// Every record that can be read, with its path.
    pub fn iter(self) -> impl Iterator<Item = (&'a str, FileRecord)> + 'a {
        (0..self.len()).filter_map(move |index| {
            let path = std::str::from_utf8(self.path(index)?).ok()?;
            Some((path, self.record(index)?))
        })
    }

    /// Encodes `records`, sorted by path.
    pub fn encode(records: &[(&str, FileRecord)]) -> Vec<u8> {
        let paths: usize = records.iter().map(|(path, _)| path.len()).sum();
        let mut bytes = Vec::with_capacity(4 + records.len() * RECORD + paths);
        bytes.extend_from_slice(&(records.len() as u32).to_le_bytes());
        let mut end = 0usize;
        for (path, record) in records {
            end += path.len();
            let stamp = &record.stamp;
            // Past 4 GiB of paths the table reads as damaged: hashed again.
            bytes.extend_from_slice(&u32::try_from(end).unwrap_or(u32::MAX).to_le_bytes());
            bytes.extend_from_slice(&stamp.size.to_le_bytes());
            bytes.extend_from_slice(&stamp.modified.to_le_bytes());
            bytes.extend_from_slice(&stamp.changed.to_le_bytes());
            bytes.extend_from_slice(&stamp.inode.to_le_bytes());
            bytes.extend_from_slice(&stamp.mode.to_le_bytes());
            bytes.extend_from_slice(record.digest.as_bytes());
        }
        for (path, _) in records {
            bytes.extend_from_slice(path.as_bytes());
        }
        bytes
    }

    fn path_end(&self, index: usize) -> Option<usize> {
        let bytes = self.records.get(index * RECORD..index * RECORD + 4)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
    }
}

/// The `N` bytes of `record` from `at` (a constant offset within it).
fn field<const N: usize>(record: &[u8; RECORD], at: usize) -> [u8; N] {
    let mut bytes = [0; N];
    bytes.copy_from_slice(&record[at..at + N]);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seed: u64) -> FileRecord {
        FileRecord {
            stamp: Stamp {
                size: seed,
                modified: -(seed as i64),
                changed: seed as i64 * 3,
                inode: u64::MAX - seed,
                mode: 0o100644,
            },
            digest: Digest::of(&seed.to_le_bytes()),
        }
    }

    fn table(paths: &[&'static str]) -> (Vec<u8>, Vec<(&'static str, FileRecord)>) {
        let records: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(seed, path)| (*path, record(seed as u64)))
            .collect();
        (FileTable::encode(&records), records)
    }

    #[test]
    fn records_read_back_as_written_and_sorted_paths_are_found_in_one_pass() {
        let (bytes, records) = table(&["a.txt", "a/b/c.txt", "a/z.txt", "b", "ü/空 file"]);
        let table = FileTable::parse(&bytes);
        assert_eq!(table.iter().collect::<Vec<_>>(), records);
        assert_eq!(table.seek("a/z.txt"), 2);
        assert_eq!(table.seek("a/y"), 2);
        assert_eq!(table.seek("zzz"), 4, "bytewise, as Rust orders strings");
        assert_eq!(table.seek("ü/空 file!"), 5);

        let mut cursor = 0;
        for (path, record) in &records {
            let (at, found) = table.find(cursor, path);
            assert_eq!(found, Some(*record), "{path}");
            cursor = at;
        }
        assert_eq!(table.find(0, "a/c.txt"), (2, None), "between two records");
        assert_eq!(table.find(5, "zzz"), (5, None), "past the end");
    }

    #[test]
    fn a_damaged_table_finds_nothing_it_cannot_read_and_never_panics() {
        let (bytes, _) = table(&["a.txt", "b.txt", "c.txt"]);
        // Cut anywhere: a table too short for its records is empty; one
        // whose paths are cut finds only the paths still whole.
        for length in 0..bytes.len() {
            let table = FileTable::parse(&bytes[..length]);
            for (index, path) in ["a.txt", "b.txt", "c.txt"].into_iter().enumerate() {
                let (_, found) = table.find(0, path);
                assert!(found.is_none() || found == Some(record(index as u64)));
            }
            let _ = table.iter().count();
        }
        // A path end pointing past the paths, or before the previous one.
        let mut damaged = bytes.clone();
        damaged[4 + RECORD..4 + RECORD + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let table = FileTable::parse(&damaged);
        assert_eq!(table.find(0, "b.txt").1, None);
        assert_eq!(table.path(2), None, "its successor starts past the end too");
        damaged[4 + RECORD..4 + RECORD + 4].copy_from_slice(&0u32.to_le_bytes());
        let table = FileTable::parse(&damaged);
        assert_eq!(table.find(0, "b.txt").1, None);
        assert_eq!(table.find(0, "a.txt").1, Some(record(0)));
        // A count far larger than the bytes.
        let mut huge = bytes;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(FileTable::parse(&huge).len(), 0);
    }
}
