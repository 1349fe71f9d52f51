//! `GET /dashboard`, in a real browser: an lb process with an admin token and sample-web
//! backends, and `tests/dashboard/check.mjs` driving Debian's Chromium headless through
//! playwright-core (`npm ci` in `tests/dashboard`). The page loads without the token and asks
//! for it; then every pool and backend shows, a backend turning sick shows as sick within two
//! seconds, and a 401 brings the prompt back. `DASHBOARD_SCREENSHOT=docs/dashboard.png` saves
//! what the page shows for the README.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, Lb, SampleWeb};
use serde_json::{json, Value};

const TOKEN: &str = "dashboard-token-for-tests-0123456789";
/// What a fresh machine runs to get the browser and its driver (the README says the same).
const SETUP: &str = "apt-get install -y --no-install-recommends chromium && (cd tests/dashboard && npm ci)";
/// How long one run of the browser script may take, its own deadlines included.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(120);
/// A pattern that is markup if anything renders it as HTML.
const HOSTILE: &str = r#"/"'><svg/onload=window.__pwned=1>/{x}"#;

/// An lb process (token-protected unless started open), its token file and the backends of
/// its pools.
struct Site {
    lb: Lb,
    _token: Option<tempfile::NamedTempFile>,
    webs: Vec<SampleWeb>,
    /// `[{pattern, backends: ["ip:port"]}]`, as check.mjs expects them.
    pools: Vec<Value>,
}

impl Site {
    fn start() -> Site {
        let mut token = tempfile::NamedTempFile::new().unwrap();
        writeln!(token, "{TOKEN}").unwrap();
        let lb = Lb::start_with(Arc::new(tempfile::tempdir().unwrap()), &["--admin-token-file", path(token.path())]);
        Site { lb, _token: Some(token), webs: Vec::new(), pools: Vec::new() }
    }

    /// An lb without a token (its admin API on loopback), as the quick start runs it. The
    /// token [`Site::admin`] sends anyway is ignored.
    fn start_open() -> Site {
        Site { lb: Lb::start(), _token: None, webs: Vec::new(), pools: Vec::new() }
    }

    /// Sends an admin API call with the token and asserts it succeeded.
    async fn admin(&self, method: reqwest::Method, path: &str, query: &[(&str, &str)], body: Value) -> Value {
        let r = client().request(method, self.lb.admin_url(path)).bearer_auth(TOKEN).query(query).json(&body);
        let r = r.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{path} {query:?}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Adds pool `pattern`, checked every 200 ms (one failure makes a backend sick), with a
    /// new sample-web backend per name in `nodes`, or the existing backend `reuse`.
    async fn add_pool(&mut self, pattern: &str, nodes: &[&str], reuse: Option<usize>) {
        let check = json!({"interval_ms": 200, "timeout_ms": 200, "fall": 1, "rise": 1, "evict_after": 0});
        self.admin(reqwest::Method::POST, "/v1/pools", &[], json!({"pattern": pattern, "health_check": check})).await;
        let mut indexes: Vec<usize> = reuse.into_iter().collect();
        for node in nodes {
            self.webs.push(SampleWeb::start(node));
            indexes.push(self.webs.len() - 1);
        }
        let mut addresses = Vec::new();
        for i in indexes {
            let web = &self.webs[i];
            let body = json!({"ip": web.ip(), "port": web.port()});
            self.admin(reqwest::Method::POST, "/v1/pool/backends", &[("pattern", pattern)], body).await;
            addresses.push(web.addr.to_string());
        }
        self.pools.push(json!({"pattern": pattern, "backends": addresses}));
    }

    /// Runs check.mjs with `CHECK=check` against this lb and panics with its one line of
    /// failure, if it fails.
    fn browse(&self, check: &str, extra: &[(&str, String)]) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard");
        if Command::new("node").arg("--version").stdout(Stdio::null()).status().is_err() {
            panic!("node is missing: apt-get install -y nodejs npm, then {SETUP}");
        }
        let mut cmd = Command::new("node");
        cmd.arg("check.mjs")
            .current_dir(&dir)
            .env("LB_ADMIN", format!("http://{}", self.lb.admin))
            .env("LB_DATA", format!("http://{}", self.lb.data))
            .env("LB_TOKEN", TOKEN)
            .env("CHECK", check)
            .env("POOLS", Value::from(self.pools.clone()).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(shot) = std::env::var_os("DASHBOARD_SCREENSHOT") {
            cmd.env("SCREENSHOT", Path::new(env!("CARGO_MANIFEST_DIR")).join(PathBuf::from(shot)));
        }
        for (name, value) in extra {
            cmd.env(name, value);
        }
        let mut child = cmd.spawn().expect("node starts");
        let end = Instant::now() + SCRIPT_DEADLINE;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("check.mjs ({check}) did not finish within {SCRIPT_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}\n{stdout}", stderr.trim_end());
        assert_eq!(stdout.trim(), format!("dashboard check: {check}: ok"), "{stderr}");
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn the_page_loads_without_the_token_and_its_data_needs_it() {
    let site = Site::start();
    for (asset, kind) in
        [("/dashboard", "text/html"), ("/dashboard.js", "text/javascript"), ("/dashboard.css", "text/css")]
    {
        let r = client().get(site.lb.admin_url(asset)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let headers = r.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind), "{asset}: {headers:?}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(!r.text().await.unwrap().contains(TOKEN));
    }
    // Only those: a neighbouring path, another method and every data endpoint want the token.
    for path in ["/dashboard/", "/dashboard.html", "/dashboardx", "/v1/pools", "/v1/state", "/metrics"] {
        let r = client().get(site.lb.admin_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = client().post(site.lb.admin_url("/dashboard")).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The page passes the other checks like any request: a foreign Host or Origin is refused.
    let r = client().get(site.lb.admin_url("/dashboard")).header("host", "rebound.example").send().await.unwrap();
    assert_eq!(r.status(), 421);
    let r = client().get(site.lb.admin_url("/dashboard.js")).header("origin", "http://evil.example").send().await;
    assert_eq!(r.unwrap().status(), 403);
}

#[tokio::test]
async fn the_dashboard_asks_for_the_token_then_shows_pools_and_a_backend_turning_sick() {
    let mut site = Site::start();
    site.add_pool("/", &["A", "B"], None).await;
    site.add_pool("/api/", &["C"], None).await;
    site.add_pool(HOSTILE, &[], Some(1)).await;
    let sick = site.webs[0].addr.to_string();
    site.browse("health", &[("SICK", sick)]);
}

#[tokio::test]
async fn without_a_token_the_dashboard_shows_everything_at_once() {
    let mut site = Site::start_open();
    site.add_pool("/", &["A"], None).await;
    site.browse("open", &[]);
}

#[tokio::test]
async fn the_dashboards_counters_move_after_traffic() {
    let mut site = Site::start();
    site.add_pool("/", &["A", "B"], None).await;
    site.browse("metrics", &[]);
}
