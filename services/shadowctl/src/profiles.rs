//! `shadowctl profiles`: the mirror's shadow profiles, through its admin API. Profiles are
//! the mirror's own `Profile` type, read from a .json or .toml file and checked here with
//! the mirror's own rules before they are sent.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shadowdiff_core::Role;
use shadowdiff_mirror::profile::{Faults, Profile};

use crate::api::{Api, Listed};
use crate::cli::{FaultArgs, ProfilesCommand};
use crate::style::{DIM, FAIL, HEADER, PASS, WARN, paint};
use crate::table::{Align, Cell, Table};
use crate::{CtlError, out};

pub async fn run(api: &Api, command: &ProfilesCommand) -> Result<(), CtlError> {
    match command {
        ProfilesCommand::List => out(&list(&api.profiles().await?, now_ms())),
        ProfilesCommand::Apply { file } => {
            let profile = load(file)?;
            let applied = api.apply(&profile).await?;
            out(&format!("accepted profile {}: {}\n", applied.id, summary(&applied, now_ms())));
        }
        ProfilesCommand::Delete { id } => {
            api.delete(id).await?;
            out(&format!("deleted profile {id}\n"));
        }
        ProfilesCommand::Fault(args) => {
            let profile = api.faults(&args.id, &faults(args)).await?;
            out(&format!("profile {} faults: {}\n", profile.id, describe_faults(&profile.faults)));
        }
        ProfilesCommand::Status { id } => out(&status(&api.status(id).await?)),
    }
    Ok(())
}

fn faults(args: &FaultArgs) -> Faults {
    Faults {
        latency_ms: args.latency_ms,
        latency_percent: args.latency_percent,
        error_status: args.error_status,
        error_percent: args.error_percent,
        drop_percent: args.drop_percent,
    }
}

/// One profile from `path`, by its extension, with every problem the mirror would refuse
/// it for reported at once.
pub fn load(path: &Path) -> Result<Profile, CtlError> {
    let input = |reason: String| CtlError::Input { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| input(e.to_string()))?;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let profile: Profile = match extension.as_str() {
        "json" => serde_json::from_str(&text).map_err(|e| input(e.to_string()))?,
        "toml" => toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            input(line.map_or_else(|| e.message().to_owned(), |line| format!("line {line}: {}", e.message())))
        })?,
        _ => return Err(input("not a profile file: use .json or .toml".to_owned())),
    };
    // Which targets are allowed is the mirror's to say; it answers 400 with the reason.
    let problems = profile.out_of_bounds();
    if !problems.is_empty() {
        return Err(input(format!("invalid profile: {}", problems.join("; "))));
    }
    Ok(profile)
}

fn list(profiles: &[Listed], now_ms: i64) -> String {
    if profiles.is_empty() {
        return format!("{}\n", paint(DIM, "no profiles"));
    }
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("STATE", Align::Left),
        ("STAGE", Align::Left),
        ("SAMPLE", Align::Right),
        ("EXPIRES", Align::Left),
        ("TARGETS", Align::Left),
        ("FAULTS", Align::Left),
    ]);
    for Listed { profile, expired } in profiles {
        let state = match (profile.enabled, *expired) {
            (_, true) => Cell::styled(WARN, "expired"),
            (false, false) => Cell::styled(DIM, "disabled"),
            (true, false) => Cell::styled(PASS, "active"),
        };
        let targets: Vec<String> =
            profile.targets.iter().map(|t| format!("{} ({})", t.name, Role::from(t.role).as_str())).collect();
        table.row(vec![
            profile.id.clone().into(),
            state,
            profile.stage.as_str().into(),
            format!("{}%", profile.sample_percent).into(),
            expires(profile, now_ms).into(),
            targets.join(", ").into(),
            describe_faults(&profile.faults).into(),
        ]);
    }
    table.render("")
}

fn summary(profile: &Profile, now_ms: i64) -> String {
    format!(
        "stage {}, {}% sampled, {} target(s), expires {}, faults {}",
        profile.stage.as_str(),
        profile.sample_percent,
        profile.targets.len(),
        expires(profile, now_ms),
        describe_faults(&profile.faults)
    )
}

fn expires(profile: &Profile, now_ms: i64) -> String {
    match profile.expires_at_ms {
        None => "never".to_owned(),
        Some(at) if at <= now_ms => "expired".to_owned(),
        Some(at) => {
            let secs = u64::try_from((at - now_ms) / 1000).unwrap_or(0);
            format!("in {}", humantime::format_duration(Duration::from_secs(secs)))
        }
    }
}

fn describe_faults(f: &Faults) -> String {
    let mut parts = Vec::new();
    if f.latency_percent > 0.0 {
        parts.push(format!("+{}ms on {}%", f.latency_ms, f.latency_percent));
    }
    if f.error_percent > 0.0 {
        parts.push(format!("{} on {}%", f.error_status, f.error_percent));
    }
    if f.drop_percent > 0.0 {
        parts.push(format!("drop {}%", f.drop_percent));
    }
    if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
}

/// The mirror's status JSON: its fields, then one row per target.
fn status(status: &Value) -> String {
    let mut text = String::new();
    let Value::Object(fields) = status else {
        return format!("{status}\n");
    };
    let id = fields.get("id").and_then(Value::as_str).unwrap_or("?");
    let _ = writeln!(text, "{}", paint(HEADER, format!("profile {id}")));
    for (key, value) in fields {
        if key != "id" && key != "targets" {
            let _ = writeln!(text, "  {key}: {}", scalar(value));
        }
    }
    let targets = fields.get("targets").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let Some(Value::Object(first)) = targets.first() else {
        let _ = writeln!(text, "  {}", paint(DIM, "no targets running on this replica"));
        return text;
    };
    // Name and role first, the counters after them.
    let mut keys: Vec<&str> = ["name", "role"].into_iter().filter(|k| first.contains_key(*k)).collect();
    keys.extend(first.keys().map(String::as_str).filter(|k| !matches!(*k, "name" | "role")));
    let names: Vec<String> = keys.iter().map(|k| k.replace('_', " ").to_uppercase()).collect();
    let headers: Vec<(&str, Align)> = names
        .iter()
        .zip(&keys)
        .map(|(name, key)| (name.as_str(), if first[*key].is_number() { Align::Right } else { Align::Left }))
        .collect();
    let mut table = Table::new(&headers);
    for target in targets {
        let cells = keys
            .iter()
            .map(|k| {
                let value = target.get(*k).unwrap_or(&Value::Null);
                let style =
                    if *k == "circuit" && value.as_str() != Some("closed") { FAIL } else { crate::style::PLAIN };
                Cell::styled(style, scalar(value))
            })
            .collect();
        table.row(cells);
    }
    text.push('\n');
    text.push_str(&table.render("  "));
    text
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "—".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that is removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn write(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("shadowctl-test-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        TempFile(path)
    }

    #[test]
    fn profiles_load_from_toml_and_json_alike() {
        let toml = write(
            "p.toml",
            "id = \"checkout-v2\"\nstage = \"10\"\nsample_percent = 25\nttl_secs = 3600\n\
             faults = { latency_ms = 200, latency_percent = 5 }\n\
             [[targets]]\nname = \"v2\"\nrole = \"candidate\"\nbase_url = \"http://v2:8080\"\n",
        );
        let json = write(
            "p.json",
            r#"{"id":"checkout-v2","stage":"10","sample_percent":25,"ttl_secs":3600,
               "faults":{"latency_ms":200,"latency_percent":5},
               "targets":[{"name":"v2","role":"candidate","base_url":"http://v2:8080"}]}"#,
        );
        let from_toml = load(&toml.0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_toml, load(&json.0).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(from_toml.stage.as_str(), "10");
        assert_eq!(describe_faults(&from_toml.faults), "+200ms on 5%");
    }

    #[test]
    fn every_problem_is_reported_before_sending() {
        let path = write("bad.toml", "id = \"\"\nsample_percent = 250\ntargets = []\n");
        let error = load(&path.0).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("id: 1 to 64 characters"), "{error}");
        assert!(error.contains("sample_percent: between 0 and 100"), "{error}");
        assert!(error.contains("targets: 1 to 8 targets"), "{error}");
        let syntax = write("syntax.toml", "id = \"x\"\n\ntargets = [\n");
        let error = load(&syntax.0).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("line 3"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
        let yaml = write("p.yaml", "id: x\n");
        assert!(load(&yaml.0).is_err());
    }

    #[test]
    fn status_lists_each_target() {
        let value = serde_json::json!({
            "id": "p", "enabled": true, "expired": false, "stage": "10", "consumer_lag": 3,
            "targets": [{"name": "v2", "role": "candidate", "rate_per_sec": 1.5, "replays": 10, "circuit": "closed"}]
        });
        let text = anstream::adapter::strip_str(&status(&value)).to_string();
        assert!(text.contains("consumer_lag: 3"), "{text}");
        assert!(text.contains("NAME  ROLE"), "{text}");
        assert!(text.contains("v2    candidate"), "{text}");
        assert!(text.contains("1.50"), "{text}");
    }
}
