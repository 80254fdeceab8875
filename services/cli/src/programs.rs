//! `touchpoint programs`: the cadence service's own validation, run before a
//! program goes live, and the programs as a Kubernetes ConfigMap.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use touchpoint_programs::load_dir;

/// The name of the ConfigMap `k8s/` mounts the programs from.
pub const CONFIGMAP_NAME: &str = "touchpoint-programs";
/// Stands for `/` in a ConfigMap key, which may not hold one.
pub const PATH_SEPARATOR: &str = "__";

/// Validates every program under `dir`; prints each problem and fails if any.
pub fn validate(dir: &str) -> anyhow::Result<()> {
    // The state rules beside the programs (or the built-in ones) must read too.
    let rules = touchpoint_programs::StateRules::for_programs(Path::new(dir))?;
    match load_dir(Path::new(dir)) {
        Ok(programs) => {
            for program in &programs {
                println!("ok  {} ({} steps)", program.id, program.steps.len());
            }
            println!("{} program(s) valid", programs.len());
            println!("{} state rule(s) valid", rules.iter().count());
            Ok(())
        }
        Err(errors) => {
            for error in &errors {
                println!("{error}");
            }
            anyhow::bail!("{} problem(s) found", errors.len())
        }
    }
}

/// The programs under `dir`, validated, as a ConfigMap in JSON: each file one key,
/// its path below `dir` spelled with [`PATH_SEPARATOR`] for `/`.
/// `k8s/base/programs-configmap.json` is this for `programs/`.
pub fn configmap(dir: &str) -> anyhow::Result<String> {
    if let Err(errors) = load_dir(Path::new(dir)) {
        anyhow::bail!(
            "{} problem(s) in {dir}; run `touchpoint programs validate {dir}`",
            errors.len()
        );
    }
    let mut data = BTreeMap::new();
    collect(Path::new(dir), Path::new(dir), &mut data)?;
    let configmap = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": CONFIGMAP_NAME },
        "data": data,
    });
    Ok(serde_json::to_string_pretty(&configmap)? + "\n")
}

fn collect(root: &Path, dir: &Path, data: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, data)?;
            continue;
        }
        let relative = path.strip_prefix(root)?;
        let parts: Vec<&str> = relative
            .iter()
            .map(|part| part.to_str().context("a program file's name is not UTF-8"))
            .collect::<anyhow::Result<_>>()?;
        if parts.iter().any(|part| part.contains(PATH_SEPARATOR)) {
            anyhow::bail!("{} has {PATH_SEPARATOR:?} in its path", relative.display());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} is not UTF-8 text", relative.display()))?;
        data.insert(parts.join(PATH_SEPARATOR), text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_file_is_a_key_spelling_its_path() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../programs");
        let json = configmap(dir).unwrap_or_else(|e| panic!("{e:#}"));
        let value: serde_json::Value =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        let data = value["data"].as_object().cloned().unwrap_or_default();
        assert!(data.contains_key("adherence__program.toml"));
        assert!(data.contains_key("adherence__templates__welcome.es.txt"));
        let on_disk = std::fs::read_to_string(format!("{dir}/refill-reminder/program.toml"))
            .unwrap_or_default();
        assert_eq!(data["refill-reminder__program.toml"], on_disk);
    }

    #[test]
    fn invalid_programs_make_no_configmap() {
        let error = configmap("/nonexistent/programs")
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("problem")));
    }
}
