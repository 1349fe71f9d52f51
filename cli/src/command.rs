//! Runs one checked request against the admin API and renders the answer: lb's JSON as is
//! with `--json`, otherwise a short sentence or a table for a person.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    admin::{Admin, Backend, NewBackend, NewPool, Pool, PoolHealth},
    args::{Invocation, Request},
    error::Error,
    table::table,
};

/// Returns what to print on stdout, newline-terminated. Sentences name the pool as the user
/// typed it and take the rest (mode, backend address) from lb's answer, which has the defaults
/// lb applied.
pub async fn run(invocation: Invocation) -> Result<String, Error> {
    let admin = Admin::new(&invocation.lb)?;
    let json = invocation.json;
    match &invocation.request {
        Request::ListPools => render(json, admin.list_pools().await?, pools_table),
        Request::AddPool {
            pattern,
            mode,
            strategy,
        } => {
            let pool = NewPool {
                pattern,
                mode: *mode,
                strategy: *strategy,
            };
            render(json, admin.add_pool(&pool).await?, |pool: Pool| {
                format!("added pool {pattern} (mode {})\n", pool.mode)
            })
        }
        Request::RemovePool { pattern } => {
            render(json, admin.remove_pool(pattern).await?, |_: Pool| {
                format!("removed pool {pattern}\n")
            })
        }
        Request::SetMode { pattern, mode } => {
            render(json, admin.set_mode(pattern, *mode).await?, |pool: Pool| {
                format!("pool {pattern} is now in {} mode\n", pool.mode)
            })
        }
        Request::PoolHealth { pattern } => {
            render(json, admin.pool_health(pattern).await?, health_tables)
        }
        Request::AddBackend {
            pattern,
            ip,
            port,
            url_path,
        } => {
            let backend = NewBackend {
                ip,
                port: *port,
                url_path,
            };
            let reply = admin.add_backend(pattern, &backend).await?;
            render(json, reply, |backend: Backend| {
                format!("added backend {} to pool {pattern}\n", backend.address())
            })
        }
        Request::RemoveBackend { pattern, ip, port } => {
            let reply = admin.remove_backend(pattern, ip, *port).await?;
            render(json, reply, |backend: Backend| {
                format!(
                    "removed backend {} from pool {pattern}\n",
                    backend.address()
                )
            })
        }
    }
}

/// Prints `reply` pretty with `--json`; otherwise decodes it as `T` and lets `human` word it.
fn render<T: DeserializeOwned>(
    json: bool,
    reply: Value,
    human: impl FnOnce(T) -> String,
) -> Result<String, Error> {
    if json {
        return Ok(format!("{reply:#}\n"));
    }
    serde_json::from_value(reply)
        .map(human)
        .map_err(|err| Error::Failed(format!("unexpected answer from lb admin: {err}")))
}

fn pools_table(pools: Vec<Pool>) -> String {
    let header = ["Pattern", "Mode", "Strategy", "Backends", "Status"].map(String::from);
    let rows = pools.into_iter().map(|pool| {
        let backends = pool.backends.len().to_string();
        [
            pool.pattern,
            pool.mode,
            pool.strategy,
            backends,
            pool.status,
        ]
    });
    table(&std::iter::once(header).chain(rows).collect::<Vec<_>>())
}

/// The pool's status, then one row per backend (just the header when it has none).
fn health_tables(health: PoolHealth) -> String {
    let pool = table(&[["Pool", "Status"], [&health.pattern, &health.status]]);
    let header = ["Backend", "Status"];
    let rows = health
        .backends
        .iter()
        .map(|backend| [backend.address.as_str(), backend.status.as_str()]);
    let backends = table(&std::iter::once(header).chain(rows).collect::<Vec<_>>());
    pool + &backends
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_renders_two_tables() {
        let health = serde_json::from_str(
            r#"{"pattern": "/", "status": "PS_FULL",
                "backends": [{"address": "127.0.0.1:8082", "status": "BS_HEALTHY"}]}"#,
        )
        .unwrap();
        assert_eq!(
            health_tables(health),
            "Pool  Status\n/     PS_FULL\nBackend         Status\n127.0.0.1:8082  BS_HEALTHY\n"
        );
    }

    #[test]
    fn health_without_backends_keeps_the_backend_header() {
        let health = serde_json::from_str(r#"{"pattern": "/x/", "status": "PS_UNAVAILABLE"}"#);
        assert_eq!(
            health_tables(health.unwrap()),
            "Pool  Status\n/x/   PS_UNAVAILABLE\nBackend  Status\n"
        );
    }

    #[test]
    fn pools_table_counts_backends() {
        let pools = serde_json::from_str(
            r#"[{"pattern": "/", "mode": "proxy", "strategy": "p2c", "status": "PS_FULL",
                 "backends": [{"address": "a:1"}, {"address": "b:2"}]}]"#,
        )
        .unwrap();
        assert_eq!(
            pools_table(pools),
            "Pattern  Mode   Strategy  Backends  Status\n/        proxy  p2c       2         PS_FULL\n"
        );
    }

    #[test]
    fn json_output_is_lbs_answer_pretty() {
        let reply = serde_json::json!({"pattern": "/"});
        let out = render(true, reply, |_: Pool| unreachable!()).unwrap();
        assert_eq!(out, "{\n  \"pattern\": \"/\"\n}\n");
    }
}
