//! Keeping granted secrets' values out of everything a stage hands back.
//!
//! A stage that was granted a secret can put its value anywhere it writes:
//! a log line, an annotation, its error, its summary, its outputs, a file
//! under `/out`. Text the host keeps is masked on the way in; files cannot
//! be masked without changing what the stage produced, so a value found in
//! one fails the stage instead, naming the secret and the file, never the
//! value.

use std::collections::BTreeMap;
use std::io::Read;

use memchr::memmem::Finder;

/// What replaces a secret value in text.
pub const MASK: &str = "***";

/// How much of a file is read at once when looking for values.
const CHUNK: usize = 256 * 1024;

/// The values of a stage's granted secrets, ready to mask or find.
pub(crate) struct SecretMask {
    /// `(name, value, finder for the value)`, longest value first, so a
    /// value containing another is masked whole. Empty values are left out.
    secrets: Vec<(String, String, Finder<'static>)>,
    longest: usize,
}

impl SecretMask {
    /// A mask for these `name → value` secrets.
    pub(crate) fn new(secrets: &BTreeMap<String, String>) -> Self {
        let mut secrets: Vec<(String, String, Finder<'static>)> = secrets
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name.clone(), value.clone(), Finder::new(value.as_bytes()).into_owned()))
            .collect();
        secrets.sort_by_key(|(_, value, _)| std::cmp::Reverse(value.len()));
        let longest = secrets.first().map_or(0, |(_, value, _)| value.len());
        Self { secrets, longest }
    }

    /// `text` with every secret value replaced by [`MASK`].
    pub(crate) fn mask(&self, text: &str) -> String {
        let mut masked = text.to_owned();
        for (_, value, finder) in &self.secrets {
            if finder.find(masked.as_bytes()).is_some() {
                masked = masked.replace(value.as_str(), MASK);
            }
        }
        masked
    }

    /// The name of a secret whose value `bytes` contains.
    pub(crate) fn found_in(&self, bytes: &[u8]) -> Option<&str> {
        self.secrets
            .iter()
            .find(|(_, _, finder)| finder.find(bytes).is_some())
            .map(|(name, _, _)| name.as_str())
    }

    /// The name of a secret whose value the stream contains, read in chunks
    /// that overlap by the longest value, so a value split between two reads
    /// is still found and a large file is never held whole.
    pub(crate) fn found_in_reader(&self, mut reader: impl Read) -> std::io::Result<Option<&str>> {
        if self.secrets.is_empty() {
            return Ok(None);
        }
        let overlap = self.longest - 1;
        let mut buffer = vec![0; CHUNK + overlap];
        let mut kept = 0;
        loop {
            let read = reader.read(&mut buffer[kept..])?;
            if read == 0 {
                return Ok(None);
            }
            let filled = kept + read;
            if let Some(name) = self.found_in(&buffer[..filled]) {
                return Ok(Some(name));
            }
            kept = overlap.min(filled);
            buffer.copy_within(filled - kept..filled, 0);
        }
    }

    /// Whether any secret was granted.
    pub(crate) fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(secrets: &[(&str, &str)]) -> SecretMask {
        SecretMask::new(
            &secrets
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn values_are_masked_longest_first_and_empty_ones_ignored() {
        let mask = mask(&[("SHORT", "hunter2"), ("LONG", "hunter2-extended"), ("EMPTY", "")]);
        assert_eq!(mask.mask("token hunter2-extended and hunter2"), "token *** and ***");
    }

    /// A reader that hands out at most 999 bytes a call.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            let count = buffer.len().min(999).min(self.0.len());
            buffer[..count].copy_from_slice(&self.0[..count]);
            self.0 = &self.0[count..];
            Ok(count)
        }
    }

    #[test]
    fn a_value_split_between_two_reads_is_found() {
        let mask = mask(&[("TOKEN", "s3cr3t-value")]);
        for offset in [0, CHUNK - 6, CHUNK - 1, CHUNK, 2 * CHUNK + 3] {
            let mut bytes = vec![b'.'; offset];
            bytes.extend_from_slice(b"s3cr3t-value");
            bytes.extend_from_slice(&[b'.'; 100]);
            assert_eq!(
                mask.found_in_reader(&bytes[..]).expect("read"),
                Some("TOKEN"),
                "at {offset}"
            );
            // Short reads put the chunk boundaries at odd places too.
            let trickle = Trickle(&bytes[..]);
            assert_eq!(
                mask.found_in_reader(trickle).expect("read"),
                Some("TOKEN"),
                "at {offset}"
            );
        }
        assert_eq!(mask.found_in_reader(&[b'.'; 3 * CHUNK][..]).expect("read"), None);
    }
}
