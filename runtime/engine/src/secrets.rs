//! Where secret values come from: cairn's own environment, or a
//! `--secrets-file` of `NAME=value` lines. Only names ever enter a stage's
//! key or a log; values are handed to the stage and masked everywhere else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A malformed secrets file.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The file could not be read.
    #[error("cannot read the secrets file `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A line that is not `NAME=value`.
    #[error("{path}:{line}: expected `NAME=value`, a comment (`#`) or a blank line")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
    },
}

/// Secret values by name.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    file: BTreeMap<String, String>,
}

impl Secrets {
    /// Secrets from the environment only.
    pub fn from_env() -> Self {
        Self::default()
    }

    /// Secrets from `path` (in the `.env` style: `NAME=value`, optional
    /// `export ` and matching quotes), falling back to the environment.
    pub fn from_file(path: &Path) -> Result<Self, SecretsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut file = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((name, value)) = line.split_once('=') else {
                return Err(SecretsError::Syntax {
                    path: path.to_owned(),
                    line: number + 1,
                });
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(SecretsError::Syntax {
                    path: path.to_owned(),
                    line: number + 1,
                });
            }
            let value = value.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|quote| value.strip_prefix(*quote).and_then(|rest| rest.strip_suffix(*quote)))
                .unwrap_or(value);
            file.insert(name.to_owned(), unquoted.to_owned());
        }
        Ok(Self { file })
    }

    /// The value of `name`: from the file, else from the environment.
    pub fn get(&self, name: &str) -> Option<String> {
        self.file.get(name).cloned().or_else(|| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_files_read_like_dotenv() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.env");
        std::fs::write(&path, "# deploy keys\nTOKEN=abc=def\nexport QUOTED=\"a b\"\n\n").expect("write");
        let secrets = Secrets::from_file(&path).expect("valid");
        assert_eq!(secrets.get("TOKEN").as_deref(), Some("abc=def"));
        assert_eq!(secrets.get("QUOTED").as_deref(), Some("a b"));

        std::fs::write(&path, "TOKEN=x\njust words\n").expect("write");
        let error = Secrets::from_file(&path).expect_err("line 2 is malformed");
        assert!(
            error
                .to_string()
                .ends_with("secrets.env:2: expected `NAME=value`, a comment (`#`) or a blank line"),
            "{error}"
        );
    }
}
