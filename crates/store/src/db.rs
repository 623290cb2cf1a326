use crate::Result;
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// The metadata database (`state.db`, WAL). Each engine crate owns its tables and keeps
/// its SQL; this type owns the connection, the schema and a tiny JSON key-value layer.
pub struct Db {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS kv (
    tbl TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tbl, key)
);
"#;

impl Db {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    /// The connection, for crates that keep their own tables (create them with
    /// `CREATE TABLE IF NOT EXISTS` on open) and transactions.
    pub fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a JSON value under (table, key), replacing any previous one.
    pub fn put<T: serde::Serialize>(&self, tbl: &str, key: &str, value: &T) -> Result<()> {
        let v = serde_json::to_string(value)?;
        self.conn().execute(
            "INSERT INTO kv (tbl, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT(tbl, key) DO UPDATE SET value = excluded.value",
            (tbl, key, v),
        )?;
        Ok(())
    }

    pub fn get<T: serde::de::DeserializeOwned>(&self, tbl: &str, key: &str) -> Result<Option<T>> {
        let v: Option<String> = self
            .conn()
            .query_row(
                "SELECT value FROM kv WHERE tbl = ?1 AND key = ?2",
                (tbl, key),
                |r| r.get(0),
            )
            .optional()?;
        Ok(match v {
            Some(s) => Some(serde_json::from_str(&s)?),
            None => None,
        })
    }

    pub fn delete(&self, tbl: &str, key: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM kv WHERE tbl = ?1 AND key = ?2", (tbl, key))?;
        Ok(())
    }

    /// All (key, value) pairs of a table. Rows that no longer parse are skipped.
    pub fn list<T: serde::de::DeserializeOwned>(&self, tbl: &str) -> Result<Vec<(String, T)>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT key, value FROM kv WHERE tbl = ?1 ORDER BY key")?;
        let rows = st.query_map([tbl], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (k, v) = r?;
            if let Ok(t) = serde_json::from_str(&v) {
                out.push((k, t));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn kv_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(&d.path().join("state.db")).unwrap();
        db.put("t", "a", &serde_json::json!({"x": 1})).unwrap();
        let v: Option<serde_json::Value> = db.get("t", "a").unwrap();
        assert_eq!(v.unwrap()["x"], 1);
        assert_eq!(db.list::<serde_json::Value>("t").unwrap().len(), 1);
        db.delete("t", "a").unwrap();
        assert!(db.get::<serde_json::Value>("t", "a").unwrap().is_none());
    }
}
