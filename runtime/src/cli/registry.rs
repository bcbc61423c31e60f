//! The commands that share stages through OCI registries: `cairn publish`,
//! `cairn lock`, `cairn login` and `cairn logout`.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use clap::Args;

use cairn::CacheDir;
use cairn::cas::Store;
use cairn::component_source::ComponentSources;
use cairn::oci::artifact::{DESCRIPTION, SOURCE, TITLE, VERSION};
use cairn::oci::credentials::{self, Credential};
use cairn::oci::registry;
use cairn::oci::resolve::{self, ResolveOptions, Update};
use cairn::oci::{OciReference, publish};
use cairn::pipeline::{self, Uses};
use cairn::report::{Style, paint};
use cairn::stage_build::{self, PackageInfo};
use cairn::units::ByteSize;

use super::Status;
use super::args::parse_pair;
use super::args::{PipelineLocation, RegistryArgs};

#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub(crate) struct PublishArgs {
    /// The component: a `.wasm` file, a stage source folder (built first), or `std:NAME`.
    component: String,

    /// Where to publish: `oci://HOST[:PORT]/REPOSITORY:TAG` or `oci-layout://PATH:TAG`.
    target: String,

    /// The stage's name (default: the package name, or the file's name).
    #[arg(long)]
    name: Option<String>,

    /// The stage's version (default: the package version).
    #[arg(long)]
    version: Option<String>,

    /// Where the stage's source lives (default: the package's `repository`).
    #[arg(long)]
    source: Option<String>,

    /// What the stage does (default: the package's `description`).
    #[arg(long)]
    description: Option<String>,

    /// Another manifest annotation (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = parse_pair::<String>)]
    annotations: Vec<(String, String)>,

    #[command(flatten)]
    registry: RegistryArgs,
}

impl PublishArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let cwd = Path::new(".");
        let target = OciReference::parse(&self.target, cwd)?;
        let uses = Uses::parse(&self.component, cwd)?;
        // What the component says about itself, then what the flags say instead.
        let defaults = match &uses {
            Uses::SourceFolder(folder) => stage_build::package_info(folder)?,
            Uses::File(path) => PackageInfo {
                name: path.file_stem().map(|stem| stem.to_string_lossy().into_owned()),
                ..PackageInfo::default()
            },
            Uses::Standard(name) => PackageInfo {
                name: Some(name.clone()),
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                ..PackageInfo::default()
            },
            Uses::Oci(_) => bail!(
                "`{}` is already published; to copy it, pull it with a pipeline and publish the .wasm",
                self.component
            ),
            Uses::Output { .. } => bail!(
                "`{}` is written by a stage during a run; publish the file in its `cairn-out/` folder",
                self.component
            ),
        };
        let mut annotations = BTreeMap::new();
        for (key, flag, default) in [
            (TITLE, self.name, defaults.name),
            (VERSION, self.version, defaults.version),
            (SOURCE, self.source, defaults.source),
            (DESCRIPTION, self.description, defaults.description),
        ] {
            if let Some(value) = flag.or(default) {
                annotations.insert(key.to_owned(), value);
            }
        }
        annotations.extend(self.annotations);
        let created = cairn::run::source_date_epoch()?;
        let cache = CacheDir::from_env()?;
        let executor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let published = executor.block_on(async {
            let bytes = ComponentSources::new(cache)
                .bytes(&uses)
                .await
                .with_context(|| format!("cannot read `{}`", self.component))?;
            publish::publish(&bytes, &target, annotations, created, &self.registry.settings())
                .await
                .with_context(|| format!("cannot publish `{}` to `{}`", self.component, self.target))
        })?;
        eprintln!(
            "{} published `{}` ({}, {}) as {}",
            paint("ok:", Style::Success),
            self.component,
            published.world,
            ByteSize(published.size),
            published.pinned
        );
        println!("{}", published.digest);
        Ok(Status::Success)
    }
}

#[derive(Debug, Args)]
pub(crate) struct LockArgs {
    /// With --update: re-resolve only the components these stages use.
    #[arg(value_name = "STAGE", requires = "update")]
    stages: Vec<String>,

    /// Re-resolve pinned components to what their tags name now.
    #[arg(long)]
    update: bool,

    /// Fail if the lock file is not up to date, changing nothing (for CI).
    #[arg(long, conflicts_with = "update")]
    locked: bool,

    #[command(flatten)]
    location: PipelineLocation,

    #[command(flatten)]
    registry: RegistryArgs,
}

impl LockArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let pipeline = pipeline::load(&self.location.path())?;
        let update = match (self.update, self.stages.is_empty()) {
            (false, _) => Update::Nothing,
            (true, true) => Update::All,
            (true, false) => {
                let mut references = HashSet::new();
                for name in &self.stages {
                    let matching: Vec<_> = pipeline
                        .stages
                        .iter()
                        .filter(|stage| stage.name == *name || stage.base_name == *name)
                        .collect();
                    if matching.is_empty() {
                        bail!("the pipeline has no stage `{name}`");
                    }
                    for stage in matching {
                        match &stage.uses {
                            Uses::Oci(reference) => {
                                references.insert(reference.text.clone());
                            }
                            _ => bail!(
                                "stage `{}` does not use a published component; nothing to update",
                                stage.name
                            ),
                        }
                    }
                }
                Update::References(references)
            }
        };
        let options = ResolveOptions {
            locked: self.locked,
            update,
            registry: self.registry.settings(),
        };
        let cache = CacheDir::from_env()?;
        let store = Store::open(&cache)?;
        let executor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let references = pipeline.oci_references();
        let lock_path = pipeline.lock_path();
        let remote = executor.block_on(resolve::resolve(&references, &lock_path, &store, &options))?;
        for change in &remote.changes {
            eprintln!("  {change}");
        }
        let lock_name = lock_path.display();
        if references.is_empty() {
            eprintln!(
                "{} the pipeline uses no published components",
                paint("ok:", Style::Success)
            );
        } else if remote.changes.is_empty() {
            eprintln!(
                "{} {lock_name} is up to date ({} components pinned)",
                paint("ok:", Style::Success),
                references.len()
            );
        } else {
            eprintln!("{} wrote {lock_name}", paint("ok:", Style::Success));
        }
        Ok(Status::Success)
    }
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The registry: HOST or HOST:PORT.
    host: String,

    /// The user name.
    #[arg(short, long, required_unless_present = "token_stdin")]
    username: Option<String>,

    /// Read the password (or access token) from stdin.
    #[arg(long, requires = "username")]
    password_stdin: bool,

    /// Read a bearer token from stdin instead of a user and password.
    #[arg(long, conflicts_with_all = ["username", "password_stdin"])]
    token_stdin: bool,

    #[command(flatten)]
    registry: RegistryArgs,
}

impl LoginArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        if !self.password_stdin && !self.token_stdin {
            bail!(
                "pass the password on stdin: `echo \"$PASSWORD\" | cairn login {} --username USER --password-stdin`",
                self.host
            );
        }
        let mut secret = String::new();
        std::io::stdin()
            .read_to_string(&mut secret)
            .context("cannot read the secret from stdin")?;
        let secret = secret.trim_end_matches(['\n', '\r']).to_owned();
        if secret.is_empty() {
            bail!("stdin was empty; pipe the password or token into `cairn login`");
        }
        let credential = match self.username {
            Some(username) => Credential::Basic {
                username,
                password: secret,
            },
            None => Credential::Bearer(secret),
        };
        let executor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        executor.block_on(registry::check_login(
            &self.host,
            &self.registry.settings(),
            &credential,
        ))?;
        let place = credentials::store(&self.host, &credential)?;
        eprintln!(
            "{} logged in to `{}`; credentials saved in {place}",
            paint("ok:", Style::Success),
            self.host
        );
        Ok(Status::Success)
    }
}

#[derive(Debug, Args)]
pub(crate) struct LogoutArgs {
    /// The registry: HOST or HOST:PORT.
    host: String,
}

impl LogoutArgs {
    pub(crate) fn execute(self) -> anyhow::Result<Status> {
        let removed = credentials::erase(&self.host)?;
        if removed {
            eprintln!(
                "{} removed the credentials for `{}` from `{}`",
                paint("ok:", Style::Success),
                self.host,
                credentials::config_path().display()
            );
        } else {
            eprintln!(
                "{} `{}` had no stored credentials in `{}`",
                paint("ok:", Style::Success),
                self.host,
                credentials::config_path().display()
            );
        }
        Ok(Status::Success)
    }
}
