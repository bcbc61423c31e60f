//! A stage's key: its references resolved, its inputs listed, and
//! everything it can observe digested, with why it would not be reused.

use super::*;

impl StageExecutor {
    /// Resolves the stage's references and computes its key.
    pub(super) fn prepare(
        &self,
        index: usize,
        component: &ComponentRef,
        upstream: &Upstream,
    ) -> Result<Prepared, String> {
        let stage = &self.pipeline.stages[index];
        let tools = &self.tools.by_stage[index];
        let resolve = |reference: &Reference| match reference {
            Reference::StageOutput { stage, key } => upstream
                .outputs
                .get(stage)
                .and_then(|outputs| outputs.get(key).cloned()),
            Reference::StageResult(base) => upstream.results.get(base).cloned(),
            Reference::Monitor(field) => self.monitor.get(field).cloned(),
            _ => None,
        };
        let render = |template: &Template| {
            template.render(&resolve).map_err(|reference| match reference.stage() {
                Some(needed) if upstream.outputs.contains_key(needed) => {
                    format!("`${{{{ {reference} }}}}`: stage `{needed}` returned no output of that name")
                }
                _ => format!("`${{{{ {reference} }}}}` cannot be resolved"),
            })
        };
        let args = stage.args.iter().map(render).collect::<Result<Vec<_>, _>>()?;
        let config = stage
            .with
            .iter()
            .map(|(key, template)| Ok((key.clone(), render(template)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        let env = stage
            .env
            .iter()
            .map(|(key, template)| Ok((key.clone(), render(template)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()?;

        let globs: Vec<&str> = stage.inputs.iter().map(|glob| glob.pattern.as_str()).collect();
        let inputs = self
            .workspace
            .select_indices(&globs)
            .map_err(|error| error.to_string())?;
        let files = self.workspace.files();
        let mut listed = Vec::with_capacity(inputs.len());
        for &index in &inputs {
            listed.push((files[index].path.as_str(), self.input_entry(index)?));
        }
        let inputs_digest = Tree::digest_of_files(listed);

        let needs: BTreeMap<String, Digest> = upstream.digests.clone();
        let every_need_succeeded = stage.needs.iter().all(|need| needs.contains_key(need));
        let mut secrets = stage.secrets.clone();
        secrets.sort();
        let mut network = stage.network.clone();
        network.sort();
        let parts = KeyParts {
            stage: stage.name.clone(),
            component: component.digest,
            format: component.format.as_str().to_owned(),
            args,
            config,
            env,
            secrets,
            network,
            http_auth: stage
                .http_auth
                .iter()
                .map(|(origin, credential)| (origin.clone(), credential.to_string()))
                .collect(),
            clock: match stage.clock {
                ClockGrant::Pinned => Clock::Pinned {
                    source_date_epoch: self.source_date_epoch,
                },
                ClockGrant::Real => Clock::Real,
            },
            random: stage.random,
            inputs: inputs_digest,
            needs,
            tools: tools
                .iter()
                .map(|tool| (tool.grant.name.clone(), tool.identity))
                .collect(),
            tool_sandbox: if tools.is_empty() { None } else { self.tools.sandbox },
        };
        let key = parts.key();
        let not_reused = if self.always_run.contains(&stage.name) {
            Some("`cairn monitor` runs its checks every round".to_owned())
        } else if let Some(environment) = &stage.environment {
            Some(format!(
                "it deploys to environment `{environment}`, and a stage in an environment always runs"
            ))
        } else if !every_need_succeeded {
            Some("it runs after a stage it needs did not succeed".to_owned())
        } else {
            match (stage.cache, parts.impurity()) {
                (Some(false), _) => Some("it has side effects (`cache = false`)".to_owned()),
                (None, Some(impurity)) => Some(format!(
                    "{impurity}, so its result is not reused (write `cache = true` in its table to \
                     reuse it while its key holds, as for a fetch keyed by its lockfile)"
                )),
                (Some(true), _) | (None, None) => None,
            }
        };
        Ok(Prepared {
            inputs,
            parts,
            key,
            index,
            not_reused,
        })
    }

    /// What the input file `index` is in the stage's `/src` tree: a file
    /// with its digest, or a link with its target text (never followed).
    pub(super) fn input_entry(&self, index: usize) -> Result<EntryKind, String> {
        let file = &self.workspace.files()[index];
        if file.stamp.is_symlink() {
            let target = self
                .workspace
                .link_target(file)
                .map_err(|error| format!("cannot read the link `{}`: {error}", file.path))?;
            return Ok(EntryKind::Symlink { target });
        }
        let digest = self.input_digests[index].ok_or_else(|| format!("the input `{}` was not hashed", file.path))?;
        Ok(EntryKind::File {
            digest,
            size: file.stamp.size,
            executable: file.stamp.executable(),
        })
    }
}
