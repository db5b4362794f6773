//! Where a table's rows are stored: on one server, or sharded across a cluster.
//!
//! On one server every table is the `*MergeTree` its migration creates. On a cluster
//! (`[clickhouse] cluster`) the migration creates `<table>_local` on every server, as the
//! `Replicated*MergeTree` of the same family, and a `Distributed` table under the plain name
//! routes each row to its shard. Readers and writers only ever name the plain tables, so
//! every query, dashboard and README query reads the same on both.

use shadowdiff_runtime::clickhouse::ClickHouse;

/// The database's tables and, on a cluster, its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    database: String,
    cluster: Option<String>,
}

/// Suffix of the tables that hold a cluster's rows on each server.
const LOCAL: &str = "_local";

impl Layout {
    /// Both names come from a validated config: plain identifiers, safe to splice into DDL.
    pub fn new(database: impl Into<String>, cluster: Option<String>) -> Self {
        Self { database: database.into(), cluster }
    }

    pub fn of(clickhouse: &ClickHouse) -> Self {
        Self::new(clickhouse.database.clone(), clickhouse.cluster.clone())
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// ` ON CLUSTER <name>` on a cluster, else nothing: what makes a DDL statement run on
    /// every server.
    pub fn on_cluster(&self) -> String {
        self.cluster.as_ref().map(|name| format!(" ON CLUSTER {name}")).unwrap_or_default()
    }

    /// The unqualified name of the table that holds `table`'s rows on each server.
    pub fn stored_name(&self, table: &str) -> String {
        match self.cluster {
            Some(_) => format!("{table}{LOCAL}"),
            None => table.to_owned(),
        }
    }

    /// `database.table` of the table that holds `table`'s rows: the target of DDL.
    pub fn stored(&self, table: &str) -> String {
        format!("{}.{}", self.database, self.stored_name(table))
    }

    /// The engine clause for a table of `engine` (a `*MergeTree` family, as the migration
    /// names it): itself on one server, its replicated form on a cluster, with the replica
    /// path from the servers' `{shard}` and `{replica}` macros.
    pub fn engine(&self, engine: &str, table: &str) -> String {
        match self.cluster {
            None => format!("{engine}()"),
            Some(_) => format!(
                "Replicated{engine}('/clickhouse/tables/{{shard}}/{}/{}', '{{replica}}')",
                self.database,
                self.stored_name(table)
            ),
        }
    }

    /// The `Distributed` table over `table`'s local tables, on a cluster.
    pub fn distributed(&self, table: &str) -> Option<String> {
        let cluster = self.cluster.as_ref()?;
        let database = &self.database;
        Some(format!(
            "CREATE TABLE IF NOT EXISTS {database}.{table} ON CLUSTER {cluster} AS {local} \
             ENGINE = Distributed({cluster}, {database}, {local_name}, {key})",
            local = self.stored(table),
            local_name = self.stored_name(table),
            key = sharding_key(table),
        ))
    }
}

/// How a table's rows are spread over the shards. Everything about one exchange (every
/// leg's comparison, difference, sample and call) has the same request id, so it lands on
/// one shard and `FINAL` de-duplicates it there, as on one server. A candidate's verdicts,
/// releases and acceptances stay together the same way.
pub fn sharding_key(table: &str) -> &'static str {
    match table {
        "verdicts" | "releases" | "acceptances" => "cityHash64(candidate)",
        "schema_migrations" => "version",
        _ => "cityHash64(request_id)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_keeps_the_plain_tables() {
        let single = Layout::new("sd", None);
        assert_eq!(single.stored("exchanges"), "sd.exchanges");
        assert_eq!(single.engine("ReplacingMergeTree", "exchanges"), "ReplacingMergeTree()");
        assert_eq!(single.on_cluster(), "");
        assert_eq!(single.distributed("exchanges"), None);
    }

    #[test]
    fn a_cluster_keeps_rows_in_replicated_local_tables_behind_distributed_ones() {
        let cluster = Layout::new("sd", Some("c1".to_owned()));
        assert_eq!(cluster.stored("exchanges"), "sd.exchanges_local");
        assert_eq!(
            cluster.engine("ReplacingMergeTree", "exchanges"),
            "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/sd/exchanges_local', '{replica}')"
        );
        assert_eq!(cluster.on_cluster(), " ON CLUSTER c1");
        assert_eq!(
            cluster.distributed("exchanges").as_deref(),
            Some(
                "CREATE TABLE IF NOT EXISTS sd.exchanges ON CLUSTER c1 AS sd.exchanges_local \
                 ENGINE = Distributed(c1, sd, exchanges_local, cityHash64(request_id))"
            )
        );
    }
}
