//! Header comparison: names case-insensitively, repeated headers as one comma-joined value,
//! minus the route's ignore list (which has sensible defaults: Date, Server, tracing...).

use std::collections::BTreeMap;

use super::limits::Found;
use super::options::DiffOptions;
use super::{DiffKind, Difference};
use crate::event::Header;

fn table<'a>(headers: &'a [Header], options: &DiffOptions) -> BTreeMap<String, Vec<&'a [u8]>> {
    let mut table: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
    for header in headers {
        let name = header.name.to_ascii_lowercase();
        if !options.header_ignored(&name) {
            table.entry(name).or_default().push(&header.value);
        }
    }
    table
}

fn render(values: &[&[u8]]) -> String {
    values.iter().map(|v| String::from_utf8_lossy(v)).collect::<Vec<_>>().join(", ")
}

pub(super) fn diff(primary: &[Header], shadow: &[Header], options: &DiffOptions, out: &mut Found) {
    let (p, s) = (table(primary, options), table(shadow, options));
    for (name, pv) in &p {
        let (kind, shadow) = match s.get(name) {
            Some(sv) if sv == pv => continue,
            Some(sv) => (DiffKind::ChangedValue, Some(render(sv))),
            None => (DiffKind::MissingField, None),
        };
        out.push(Difference { kind, path: format!("header:{name}"), primary: Some(render(pv)), shadow });
    }
    for (name, sv) in s.iter().filter(|(name, _)| !p.contains_key(*name)) {
        out.push(Difference {
            kind: DiffKind::ExtraField,
            path: format!("header:{name}"),
            primary: None,
            shadow: Some(render(sv)),
        });
    }
}
