//! Template variables and macro expansion, as the ClickHouse plugin does them:
//! `$__conditionalAll` and variable interpolation in the frontend (src/data/CHDatasource.ts),
//! then the backend's macros (pkg/macros) under both of the parsers it has used.

use std::collections::BTreeMap;

/// A variable's current value as Grafana holds it: one string (single-value variables),
/// or a list (multi-value ones, `$__all` for All).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VarValue {
    One(String),
    Many(Vec<String>),
}

impl VarValue {
    pub(crate) fn many(values: &[&str]) -> Self {
        Self::Many(values.iter().map(|v| (*v).to_owned()).collect())
    }

    /// JavaScript's `value.toString()`, which `$__conditionalAll` compares.
    pub(crate) fn js_string(&self) -> String {
        match self {
            Self::One(v) => v.clone(),
            Self::Many(vs) => vs.join(","),
        }
    }

    pub(crate) fn is_all(&self) -> bool {
        self.js_string() == "$__all"
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Variable {
    pub(crate) value: VarValue,
    /// The options a query variable offers, for expanding All.
    pub(crate) options: Vec<String>,
}

pub(crate) type Variables = BTreeMap<String, Variable>;

/// The time range and interval Grafana sends with a query.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueryRange {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) interval_s: u32,
}

/// The frontend's `applyConditionalAll`: from the last `$__conditionalAll(` backwards, the
/// first argument stays unless the variable in the second is All or empty, then `1=1`.
fn apply_conditional_all(mut sql: String, vars: &Variables) -> Result<String, String> {
    const MACRO: &str = "$__conditionalAll(";
    while let Some(start) = sql.rfind(MACRO) {
        let args = plugin_macro_args(&sql[start + MACRO.len() - 1..])
            .filter(|a| a.len() == 2)
            .ok_or_else(|| format!("$__conditionalAll needs two arguments: {}", &sql[start..]))?;
        let name = args[1]
            .trim()
            .strip_prefix('$')
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| format!("$__conditionalAll's second argument must be $name, not {:?}", args[1]))?;
        let var = vars.get(name).ok_or_else(|| format!("$__conditionalAll names unknown variable {name}"))?;
        let value = var.value.js_string();
        let phrase = if value.is_empty() || value == "$__all" { "1=1" } else { args[0].as_str() };
        sql = sql.replacen(&format!("{MACRO}{},{})", args[0], args[1]), phrase, 1);
    }
    Ok(sql)
}

/// The frontend's `getMacroArgs`: split at commas on the first bracket level, counting
/// only brackets (quotes are not special). `text` starts at the opening bracket.
fn plugin_macro_args(text: &str) -> Option<Vec<String>> {
    let (mut depth, mut last, mut args) = (0_i32, 1, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 1 => {
                args.push(text[last..i].to_owned());
                last = i + 1;
                continue;
            }
            _ => continue,
        }
        if depth == 0 {
            args.push(text[last..i].to_owned());
            return Some(args);
        }
    }
    None
}

/// Grafana's `templateSrv.replace` with the plugin's formatter: `$name` and `${name}` of a
/// dashboard variable are replaced (a list becomes `'a','b'`, All every option); other
/// `$...` text is left for the backend.
fn replace_variables(sql: &str, vars: &Variables) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or("unclosed ${")?;
            (&braced[..end], end + 2)
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        match vars.get(name) {
            Some(var) => {
                let values = match &var.value {
                    v if v.is_all() => var.options.clone(),
                    VarValue::Many(vs) => vs.clone(),
                    VarValue::One(v) => {
                        out.push_str(v);
                        rest = &after[len..];
                        continue;
                    }
                };
                out.push_str(&format!("'{}'", values.join("','")));
            }
            None if name.contains(':') || name.contains('.') => {
                return Err(format!("variable formats and fields are not expanded here: ${{{name}}}"));
            }
            None => out.push_str(&rest[at..at + 1 + len]),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One backend macro, as pkg/macros/macros.go writes it.
fn backend_macro(name: &str, args: Option<&[String]>, range: QueryRange) -> Option<Result<String, String>> {
    let no_args = args.is_none_or(|a| a.len() == 1 && a[0].is_empty());
    Some(match (name, args) {
        ("timeFilter", Some([column])) => {
            Ok(format!("{column} >= toDateTime({}) AND {column} <= toDateTime({})", range.from, range.to))
        }
        ("fromTime", _) if no_args => Ok(format!("toDateTime({})", range.from)),
        ("toTime", _) if no_args => Ok(format!("toDateTime({})", range.to)),
        ("interval_s", _) if no_args => Ok(range.interval_s.max(1).to_string()),
        ("timeFilter" | "fromTime" | "toTime" | "interval_s", _) => Err(format!("$__{name}: wrong arguments {args:?}")),
        _ => return None,
    })
}

pub(crate) fn identifier_end(text: &str) -> usize {
    text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len())
}

/// The backend macros this test knows how to expand; any other `$__name` fails.
const MACROS: [&str; 4] = ["timeFilter", "fromTime", "toTime", "interval_s"];

/// The backend's expansion as grafana/macropro does it: a macro takes arguments only from
/// a `(` right after its name, split at top-level commas outside quotes.
fn expand_macropro(sql: &str, range: QueryRange) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let name = &after[..identifier_end(after)];
        rest = &after[name.len()..];
        if !MACROS.contains(&name) {
            out.push_str("$__");
            out.push_str(name);
            continue;
        }
        let mut args = None;
        if rest.starts_with('(') {
            let (list, len) = split_args(rest).ok_or_else(|| format!("unclosed $__{name}("))?;
            args = Some(list);
            rest = &rest[len..];
        }
        out.push_str(&backend_macro(name, args.as_deref(), range).unwrap()?);
    }
    out.push_str(rest);
    Ok(out)
}

/// `(a, f(b, c), 'x,y')` → the trimmed arguments and the length up to the closing bracket.
fn split_args(text: &str) -> Option<(Vec<String>, usize)> {
    let (mut depth, mut start, mut quote, mut args) = (0, 1, None, Vec::new());
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    args.push(text[start..i].trim().to_owned());
                    return Some((args, i + 1));
                }
            }
            (None, ',') if depth == 1 => {
                args.push(text[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    None
}

/// The backend's expansion as grafana-plugin-sdk-go's sqlutil did it: after `$__name`, the
/// scan runs on to the first bracket; a `(` there, however far, opens the argument list,
/// and everything up to its `)` is replaced.
fn expand_sqlutil(sql: &str, range: QueryRange) -> Result<String, String> {
    let mut sql = sql.to_owned();
    for name in MACROS {
        let token = format!("$__{name}");
        let mut matches = Vec::new();
        let mut from = 0;
        while let Some(found) = sql[from..].find(&token) {
            let start = from + found;
            from = start + token.len();
            if identifier_end(&sql[from..]) != 0 {
                continue; // \b: a longer name such as $__timeFilter_ms
            }
            let tail = &sql[start..];
            let (mut depth, mut end, mut args_at) = (0, 0, None);
            for (i, c) in tail.char_indices() {
                if depth == 0 && end > 0 {
                    break;
                }
                match c {
                    '(' => {
                        depth += 1;
                        args_at.get_or_insert(i + 1);
                    }
                    ')' if depth == 0 => break,
                    ')' => {
                        depth -= 1;
                        end = i + 1;
                    }
                    _ => {}
                }
            }
            let text = if end == 0 { token.clone() } else { tail[..end].to_owned() };
            let args: Option<Vec<String>> =
                args_at.filter(|_| end > 0).map(|a| tail[a..end - 1].split(',').map(|s| s.trim().to_owned()).collect());
            matches.push((text, args));
        }
        for (text, args) in matches {
            // The Go functions of macros without arguments ignore whatever was taken as theirs.
            let args = if name == "timeFilter" { args } else { None };
            let expanded = backend_macro(name, args.as_deref(), range).unwrap()?;
            sql = sql.replace(&text, &expanded);
        }
    }
    Ok(sql)
}

/// A panel's or variable's SQL as ClickHouse receives it from Grafana.
pub(crate) fn expand(raw: &str, vars: &Variables, range: QueryRange) -> Result<String, String> {
    if raw.contains("--") || raw.contains("/*") {
        return Err("comments: newer plugins strip them before expanding macros, older ones do not".into());
    }
    let frontend = replace_variables(&apply_conditional_all(raw.to_owned(), vars)?, vars)?;
    let sql = expand_macropro(&frontend, range)?;
    let legacy = expand_sqlutil(&frontend, range)?;
    if sql != legacy {
        return Err(format!("older plugins expand this differently:\n{legacy}\ninstead of\n{sql}"));
    }
    if let Some(at) = sql.find('$') {
        return Err(format!("unknown macro or variable left: {}", &sql[at..(at + 30).min(sql.len())]));
    }
    Ok(sql)
}

/// Every table the stored data lives in must be read with FINAL, or rows rewritten after a
/// correlator restart count twice.
pub(crate) fn reads_final(sql: &str) -> Result<(), String> {
    let words: Vec<String> = sql
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    for (i, pair) in words.windows(2).enumerate() {
        if matches!(pair[0].as_str(), "from" | "join")
            && matches!(pair[1].as_str(), "exchanges" | "differences" | "samples")
            && words.get(i + 2).map(String::as_str) != Some("final")
        {
            return Err(format!("reads {} without FINAL", pair[1]));
        }
    }
    Ok(())
}
