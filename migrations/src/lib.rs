//! Ordered, atomic schema migrations of lb's sled store.
//!
//! The store records its schema version under [`VERSION_KEY`] in the [`META`] tree. At open, lb
//! calls [`run`], which applies every migration newer than that version, in order, each in one
//! sled transaction over all of lb's trees together with the version bump: a crash leaves the
//! store at the version before or after a migration, never in between. A store written by a
//! newer lb (a version this build does not know) is refused, never rewritten.
//!
//! A migration is split in two: `plan` reads the store (sled transactions cannot iterate) and
//! returns the writes it wants; [`run`] then applies them atomically. Planning runs at open,
//! before lb serves anything, so nothing changes the store between plan and apply.
//!
//! Layout of the store, as of the latest version:
//! - `meta`: `schema_version` -> u32, big-endian.
//! - `pools`: pattern (UTF-8) -> pool record.
//! - `backends`: the pattern's length (u32, big-endian), the pattern, then `ip:port` -> backend
//!   record ([`keys`]; up to schema 2: pattern, a NUL byte, `ip:port`, which let patterns holding
//!   NUL collide).
//!
//! Records are encoded by lb's `store::codec` module: a format-version byte, then bincode. A
//! migration that changes a record format keeps a frozen copy of the old record type here. As
//! of schema 4, pools are at format 3 and backends at format 2.

use std::fmt;

use sled::Transactional;

/// Tree holding store-wide metadata, such as the schema version.
pub const META: &str = "meta";
/// Tree of pools, keyed by pattern.
pub const POOLS: &str = "pools";
/// Tree of backends, keyed by pattern and `ip:port` (see [`keys`]).
pub const BACKENDS: &str = "backends";
/// Every tree a migration may touch, in the order [`Change::tree`] indexes them.
pub const TREES: [&str; 3] = [META, POOLS, BACKENDS];
/// Key of the schema version in [`META`].
pub const VERSION_KEY: &[u8] = b"schema_version";

/// One write a migration wants applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Index into [`TREES`].
    pub tree: usize,
    pub key: Vec<u8>,
    /// `None` removes the key.
    pub value: Option<Vec<u8>>,
}

/// A numbered step from schema `version - 1` to `version`.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    /// Reads the store and returns the writes that bring it to `version`.
    pub plan: fn(&sled::Db) -> Result<Vec<Change>, String>,
}

/// lb's migrations, oldest first; versions are 1, 2, 3, ... without gaps.
pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial layout: pools and backends trees, records at format 1",
        plan: |_| Ok(Vec::new()),
    },
    Migration {
        version: 2,
        name: "format 2: health checks, retries, timeouts, hash key on pools; weight, health, draining on backends",
        plan: records::v1_to_v2,
    },
    Migration {
        version: 3,
        name: "backend keys length-prefixed, so that no two patterns' backends can collide",
        plan: records::v2_to_v3,
    },
    Migration {
        version: 4,
        name: "pool format 3: expose_backend and allow_trace on pools, both off",
        plan: records::pools_to_format_3,
    },
];

pub mod keys;
pub mod records;

/// The schema version this build writes.
pub fn latest() -> u32 {
    latest_of(MIGRATIONS)
}

fn latest_of(migrations: &[Migration]) -> u32 {
    migrations.last().map_or(0, |m| m.version)
}

/// Why the store could not be brought to the latest version.
#[derive(Debug)]
pub enum Error {
    /// The store was written by a newer lb; it is left untouched.
    Newer {
        found: u32,
        supported: u32,
    },
    /// The version record is not a u32.
    BadVersion(Vec<u8>),
    /// A migration refused the data it found; the store is left at `from`.
    Failed {
        version: u32,
        name: &'static str,
        from: u32,
        reason: String,
    },
    Sled(sled::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Newer { found, supported } => write!(
                f,
                "store has schema version {found}, newer than the {supported} this lb supports; \
                 upgrade lb (the store was left untouched)"
            ),
            Error::BadVersion(raw) => {
                write!(f, "store has a corrupt schema version record {raw:?}")
            }
            Error::Failed { version, name, from, reason } => {
                write!(f, "migration {version} ({name}) failed, store left at version {from}: {reason}")
            }
            Error::Sled(e) => write!(f, "store error: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Sled(e)
    }
}

/// What [`run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub from: u32,
    pub to: u32,
}

/// Reads the store's schema version; a store that never recorded one is at version 0.
pub fn schema_version(db: &sled::Db) -> Result<u32, Error> {
    match db.open_tree(META)?.get(VERSION_KEY)? {
        None => Ok(0),
        Some(raw) => {
            let bytes: [u8; 4] = raw.as_ref().try_into().map_err(|_| Error::BadVersion(raw.to_vec()))?;
            Ok(u32::from_be_bytes(bytes))
        }
    }
}

/// Brings the store to [`latest`] and flushes it.
pub fn run(db: &sled::Db) -> Result<Outcome, Error> {
    run_migrations(db, MIGRATIONS)
}

/// Brings the store to the last of `migrations`; [`run`] with a list of one's own, for tests.
pub fn run_migrations(db: &sled::Db, migrations: &[Migration]) -> Result<Outcome, Error> {
    let from = schema_version(db)?;
    let supported = latest_of(migrations);
    if from > supported {
        return Err(Error::Newer { found: from, supported });
    }
    let trees = TREES.map(|name| db.open_tree(name));
    let [meta, pools, backends] = trees;
    let (meta, pools, backends) = (meta?, pools?, backends?);
    let mut at = from;
    for migration in migrations.iter().filter(|m| m.version > from) {
        assert_eq!(migration.version, at + 1, "migrations must be numbered without gaps");
        let failed =
            |reason: String| Error::Failed { version: migration.version, name: migration.name, from: at, reason };
        let changes = (migration.plan)(db).map_err(failed)?;
        let version = migration.version.to_be_bytes();
        (&meta, &pools, &backends)
            .transaction(|(meta, pools, backends)| {
                let trees = [meta, pools, backends];
                for change in &changes {
                    let tree = trees[change.tree];
                    match &change.value {
                        Some(value) => tree.insert(change.key.as_slice(), value.as_slice())?,
                        None => tree.remove(change.key.as_slice())?,
                    };
                }
                meta.insert(VERSION_KEY, &version)?;
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(e) => Error::Sled(e),
                sled::transaction::TransactionError::Abort(()) => failed("aborted".into()),
            })?;
        at = migration.version;
    }
    db.flush()?;
    Ok(Outcome { from, to: at })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the store, again if need be: sled lets go of its directory lock from its flusher
    /// thread, a moment after the last handle in this process drops.
    fn open(dir: &tempfile::TempDir) -> sled::Db {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match sled::open(dir.path()) {
                Ok(db) => return db,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("cannot open the store: {e}"),
            }
        }
    }

    /// A format-2 migration in the shape real ones take: rewrite every pool record.
    fn upper_case_pools(db: &sled::Db) -> Result<Vec<Change>, String> {
        let mut changes = Vec::new();
        for entry in db.open_tree(POOLS).map_err(|e| e.to_string())?.iter() {
            let (key, value) = entry.map_err(|e| e.to_string())?;
            if value.as_ref() == b"poison" {
                return Err(format!("cannot read pool {:?}", String::from_utf8_lossy(&key)));
            }
            changes.push(Change { tree: 1, key: key.to_vec(), value: Some(value.to_ascii_uppercase()) });
        }
        Ok(changes)
    }

    static TWO: &[Migration] = &[
        Migration { version: 1, name: "one", plan: |_| Ok(Vec::new()) },
        Migration { version: 2, name: "upper", plan: upper_case_pools },
    ];

    #[test]
    fn fresh_store_reaches_latest_and_stays_there() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        assert_eq!(schema_version(&db).unwrap(), 0);
        assert_eq!(run(&db).unwrap(), Outcome { from: 0, to: latest() });
        assert_eq!(run(&db).unwrap(), Outcome { from: latest(), to: latest() });
        assert_eq!(schema_version(&db).unwrap(), latest());
    }

    #[test]
    fn migrates_a_store_written_at_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open(&dir);
            run_migrations(&db, &TWO[..1]).unwrap();
            db.open_tree(POOLS).unwrap().insert("/", "proxy").unwrap();
            db.flush().unwrap();
        }
        let db = open(&dir);
        assert_eq!(run_migrations(&db, TWO).unwrap(), Outcome { from: 1, to: 2 });
        assert_eq!(db.open_tree(POOLS).unwrap().get("/").unwrap().unwrap().as_ref(), b"PROXY");
        assert_eq!(schema_version(&db).unwrap(), 2);
    }

    #[test]
    fn failed_migration_leaves_the_store_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        run_migrations(&db, &TWO[..1]).unwrap();
        let pools = db.open_tree(POOLS).unwrap();
        pools.insert("/a", "proxy").unwrap();
        pools.insert("/b", "poison").unwrap();
        let err = run_migrations(&db, TWO).unwrap_err();
        assert!(matches!(err, Error::Failed { version: 2, from: 1, .. }), "{err}");
        assert_eq!(schema_version(&db).unwrap(), 1);
        assert_eq!(pools.get("/a").unwrap().unwrap().as_ref(), b"proxy");
    }

    #[test]
    fn newer_store_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        run_migrations(&db, TWO).unwrap();
        let err = run_migrations(&db, &TWO[..1]).unwrap_err();
        assert!(matches!(err, Error::Newer { found: 2, supported: 1 }), "{err}");
        assert!(err.to_string().contains("newer"));
        assert_eq!(schema_version(&db).unwrap(), 2);
    }

    #[test]
    fn corrupt_version_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        db.open_tree(META).unwrap().insert(VERSION_KEY, &b"x"[..]).unwrap();
        assert!(matches!(run(&db), Err(Error::BadVersion(_))));
    }
}
