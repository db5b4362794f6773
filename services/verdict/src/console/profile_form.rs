//! A profile's create and edit form. Each field is named as the mirror names it
//! (`sample_percent`, `targets[0].base_url`), so each problem the mirror reports
//! (`targets[0].base_url: ...`) is shown at its field, and a refused form is shown again
//! with what was typed. What the form does not show (header predicates, unsafe-method
//! opt-ins, faults) is kept from the profile being edited.

use std::collections::BTreeMap;

use maud::html;
use serde_json::{Map, Value, json};

use super::render::{page, segment};
use crate::gate::STAGES;

/// Target rows a form offers: a profile's own, and blank ones up to this many.
const TARGET_ROWS: usize = 4;
/// Most fields, and longest value, a posted form may carry.
const MAX_FIELDS: usize = 64;
const MAX_VALUE: usize = 2048;

/// The target fields of a row, by the mirror's name: (field, label, size).
const TARGET_FIELDS: [(&str, &str, u8); 6] = [
    ("name", "name", 14),
    ("base_url", "base URL", 30),
    ("rate_per_sec", "rate/s", 5),
    ("max_concurrency", "concurrency", 4),
    ("max_queued", "queue", 5),
    ("timeout_ms", "timeout ms", 6),
];

/// The form's values, by field.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProfileForm {
    fields: BTreeMap<String, String>,
}

impl ProfileForm {
    /// A new profile's form: enabled, at shadow, every request, one candidate row.
    pub(crate) fn blank() -> Self {
        let mut form = Self::default();
        for (field, value) in
            [("enabled", "on"), ("stage", "shadow"), ("sample_percent", "100"), ("targets[0].role", "candidate")]
        {
            form.set(field, value.to_owned());
        }
        form
    }

    /// The form of `profile`, as the mirror lists it.
    pub(crate) fn of(profile: &Value) -> Self {
        let mut form = Self::default();
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        form.set("editing", text(&profile["id"]));
        for field in ["id", "stage", "sample_percent", "ttl_secs"] {
            form.set(field, text(&profile[field]));
        }
        if profile["enabled"].as_bool().unwrap_or(true) {
            form.set("enabled", "on".to_owned());
        }
        let list = |v: &Value, sep: &str| {
            v.as_array().map(|a| a.iter().map(text).collect::<Vec<_>>().join(sep)).unwrap_or_default()
        };
        form.set("match.routes", list(&profile["match"]["routes"], "\n"));
        form.set("match.methods", list(&profile["match"]["methods"], ", "));
        for (i, target) in profile["targets"].as_array().into_iter().flatten().take(TARGET_ROWS).enumerate() {
            for (field, _, _) in TARGET_FIELDS {
                form.set(&format!("targets[{i}].{field}"), text(&target[field]));
            }
            form.set(&format!("targets[{i}].role"), text(&target["role"]));
            if target["timed_by_tap"].as_bool().unwrap_or(false) {
                form.set(&format!("targets[{i}].timed_by_tap"), "on".to_owned());
            }
        }
        form
    }

    /// The form as posted: bounded in fields and length, or a problem.
    pub(crate) fn posted(fields: Vec<(String, String)>) -> Result<Self, String> {
        if fields.len() > MAX_FIELDS || fields.iter().any(|(k, v)| k.len() > 64 || v.len() > MAX_VALUE) {
            return Err(format!("a profile form has at most {MAX_FIELDS} fields of {MAX_VALUE} bytes"));
        }
        Ok(Self { fields: fields.into_iter().collect() })
    }

    fn set(&mut self, field: &str, value: String) {
        self.fields.insert(field.to_owned(), value);
    }

    fn get(&self, field: &str) -> &str {
        self.fields.get(field).map_or("", |v| v.trim())
    }

    /// The id of the profile this form edits; empty for a new one.
    pub(crate) fn editing(&self) -> &str {
        self.get("editing")
    }

    /// The profile to send the mirror: `base` (the profile edited, if any) with the form's
    /// fields over it; or each field that is no number, as the mirror words its problems.
    pub(crate) fn profile(&self, base: Option<&Value>) -> Result<Value, Vec<String>> {
        let mut problems = Vec::new();
        let mut profile: Map<String, Value> = base.and_then(Value::as_object).cloned().unwrap_or_default();
        super::mirror::without_derived(&mut profile);
        let mut number = |field: &str| -> Option<Value> {
            let text = self.get(field);
            if text.is_empty() {
                return None;
            }
            match text.parse::<serde_json::Number>() {
                Ok(n) => Some(Value::Number(n)),
                Err(_) => {
                    problems.push(format!("{field}: {text:?} is not a number"));
                    None
                }
            }
        };
        let mut url_problems = Vec::new();
        let sample = number("sample_percent");
        let ttl = number("ttl_secs");
        let mut targets = Vec::new();
        for i in 0..TARGET_ROWS {
            let at = |field: &str| format!("targets[{i}].{field}");
            if self.get(&at("name")).is_empty() && self.get(&at("base_url")).is_empty() {
                continue;
            }
            let mut target = Map::new();
            target.insert("name".into(), json!(self.get(&at("name"))));
            target.insert("role".into(), json!(self.get(&at("role"))));
            let base_url = self.get(&at("base_url"));
            if let Err(error) = reqwest::Url::parse(base_url) {
                url_problems.push(format!("{}: {base_url:?} is no absolute URL ({error})", at("base_url")));
            }
            target.insert("base_url".into(), json!(base_url));
            for field in ["rate_per_sec", "max_concurrency", "max_queued", "timeout_ms"] {
                if let Some(n) = number(&at(field)) {
                    target.insert(field.into(), n);
                }
            }
            target.insert("timed_by_tap".into(), json!(self.get(&at("timed_by_tap")) == "on"));
            targets.push(Value::Object(target));
        }
        profile.insert("id".into(), json!(self.get("id")));
        profile.insert("enabled".into(), json!(self.get("enabled") == "on"));
        profile.insert("stage".into(), json!(self.get("stage")));
        profile.insert("sample_percent".into(), sample.unwrap_or_else(|| json!(100)));
        match ttl {
            Some(ttl) => profile.insert("ttl_secs".into(), ttl),
            None => profile.remove("ttl_secs"),
        };
        let lines = |text: &str, sep: char| -> Vec<String> {
            text.split(sep).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        };
        let mut matcher = profile.remove("match").and_then(|m| m.as_object().cloned()).unwrap_or_default();
        matcher.insert("routes".into(), json!(lines(self.get("match.routes"), '\n')));
        matcher.insert("methods".into(), json!(lines(self.get("match.methods"), ',')));
        profile.insert("match".into(), Value::Object(matcher));
        profile.insert("targets".into(), Value::Array(targets));
        problems.extend(url_problems);
        if problems.is_empty() { Ok(Value::Object(profile)) } else { Err(problems) }
    }

    /// The form as a page, with `problems` at their fields (and those of no field on top).
    pub(crate) fn render(&self, problems: &[String]) -> String {
        let editing = self.editing();
        let at_field = |field: &str| -> Vec<&String> {
            problems.iter().filter(|p| p.split_once(": ").is_some_and(|(f, _)| f == field)).collect()
        };
        let known = |p: &&String| {
            p.split_once(": ").is_some_and(|(f, _)| {
                ["id", "stage", "sample_percent", "ttl_secs", "match.routes", "match.methods", "targets"].contains(&f)
                    || f.starts_with("targets[")
            })
        };
        let problem = |field: &str| html! { @for p in at_field(field) { " " span.problem data-field=(field) { (p) } } };
        let text = |field: &str, label: &str, size: u8| {
            html! { label { (label) " " input type="text" name=(field) value=(self.get(field)) size=(size); } (problem(field)) " " }
        };
        let title = if editing.is_empty() { "New profile".to_owned() } else { format!("Edit profile {editing}") };
        page(
            "profile",
            html! {
                h1 { (title) }
                p { "The mirror checks the profile and applies it on every replica; a profile with a TTL runs for that \
                     long from when it is saved." }
                @for p in problems.iter().filter(|p| !known(p)) { p.problem { (p) } }
                form #profile-form method="post" action="/profiles" {
                    input type="hidden" name="editing" value=(editing);
                    fieldset {
                        legend { "Profile" }
                        @if editing.is_empty() {
                            (text("id", "id", 20))
                        } @else {
                            input type="hidden" name="id" value=(self.get("id"));
                            "id " code { (self.get("id")) } " "
                        }
                        label { input type="checkbox" name="enabled" checked[self.get("enabled") == "on"]; " enabled" } " "
                        label { "stage " select name="stage" {
                            @for stage in STAGES { option value=(stage) selected[self.get("stage") == stage] { (stage) } }
                        } } (problem("stage")) " "
                        (text("sample_percent", "sample %", 5))
                        (text("ttl_secs", "TTL s", 8))
                    }
                    fieldset {
                        legend { "Match (empty: every route, the safe methods)" }
                        label { "routes, one a line " textarea name="match.routes" rows="3" cols="40" { (self.get("match.routes")) } }
                        (problem("match.routes")) " "
                        (text("match.methods", "methods", 20))
                    }
                    fieldset {
                        legend { "Targets" }
                        (problem("targets"))
                        @for i in 0..TARGET_ROWS {
                            @let at = |field: &str| format!("targets[{i}].{field}");
                            div.target {
                                @for (field, label, size) in TARGET_FIELDS { (text(&at(field), label, size)) }
                                label { "role " select name=(at("role")) {
                                    @for role in ["candidate", "secondary"] { option value=(role) selected[self.get(&at("role")) == role] { (role) } }
                                } } (problem(&at("role"))) " "
                                label { input type="checkbox" name=(at("timed_by_tap")) checked[self.get(&at("timed_by_tap")) == "on"]; " timed by a sidecar tap" }
                            }
                        }
                    }
                    button type="submit" { "Save profile" }
                    " " a href=(if editing.is_empty() { "/profiles".to_owned() } else { format!("/profiles#{}", segment(editing)) }) { "Cancel" }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(fields: &[(&str, &str)]) -> ProfileForm {
        ProfileForm::posted(fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()).unwrap()
    }

    #[test]
    fn an_edit_keeps_what_the_form_does_not_show() {
        let listed = json!({
            "id": "checkout", "enabled": true, "stage": "10", "sample_percent": 50.0, "expired": false,
            "expires_at_ms": 1, "ttl_secs": 3600,
            "match": { "routes": ["/a", "/b"], "methods": ["GET"], "headers": [{ "name": "x-tenant", "equals": "t1" }] },
            "faults": { "latency_ms": 5 },
            "targets": [{ "name": "v2", "role": "candidate", "base_url": "http://v2/", "timeout_ms": 900, "timed_by_tap": true }]
        });
        let mut form = ProfileForm::of(&listed);
        assert_eq!((form.editing(), form.get("match.routes")), ("checkout", "/a\n/b"));
        form.set("stage", "50".into());
        form.set("targets[1].name", "v1".into());
        form.set("targets[1].role", "secondary".into());
        form.set("targets[1].base_url", "http://v1/".into());
        let profile = form.profile(Some(&listed)).unwrap();
        assert_eq!(profile["stage"], "50");
        assert_eq!(profile["match"]["headers"], listed["match"]["headers"], "kept");
        assert_eq!(profile["faults"], listed["faults"], "kept");
        assert_eq!(profile["ttl_secs"], 3600);
        assert!(profile.get("expired").is_none() && profile.get("expires_at_ms").is_none());
        assert_eq!(profile["targets"][0]["timeout_ms"], 900);
        assert_eq!(profile["targets"][0]["timed_by_tap"], true);
        assert_eq!(
            profile["targets"][1],
            json!({ "name": "v1", "role": "secondary", "base_url": "http://v1/", "timed_by_tap": false })
        );
    }

    #[test]
    fn a_field_that_is_no_number_is_named_as_the_mirror_would() {
        let form = posted(&[
            ("id", "p"),
            ("sample_percent", "lots"),
            ("targets[0].name", "v2"),
            ("targets[0].base_url", "v2/api"),
            ("targets[0].timeout_ms", "1s"),
        ]);
        assert_eq!(
            form.profile(None).unwrap_err(),
            vec![
                "sample_percent: \"lots\" is not a number",
                "targets[0].timeout_ms: \"1s\" is not a number",
                "targets[0].base_url: \"v2/api\" is no absolute URL (relative URL without a base)"
            ]
        );
        let html = form.render(&[
            "targets[0].timeout_ms: \"1s\" is not a number".to_owned(),
            "profile topic unavailable".to_owned(),
        ]);
        assert!(html.contains(r#"data-field="targets[0].timeout_ms""#), "{html}");
        assert!(html.contains(r#"<p class="problem">profile topic unavailable</p>"#), "{html}");
        assert!(html.contains(r#"value="1s""#), "what was typed is shown again");
    }

    #[test]
    fn a_posted_form_is_bounded() {
        let many: Vec<(String, String)> = (0..=MAX_FIELDS).map(|i| (format!("f{i}"), String::new())).collect();
        assert!(ProfileForm::posted(many).is_err());
        assert!(ProfileForm::posted(vec![("id".into(), "x".repeat(MAX_VALUE + 1))]).is_err());
    }
}
