//! Runs the real sample-web binary on a free port and talks HTTP to it, as lb's tests will.

use std::{process::Stdio, time::Duration};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    time::timeout,
};

/// Long enough for a loaded CI machine, short enough that a hung child fails the test.
const DEADLINE: Duration = Duration::from_secs(10);

/// A running sample-web; killed when the test ends, passing or not.
struct SampleWeb {
    child: Child,
    addr: String,
}

impl SampleWeb {
    async fn start(node: &str) -> SampleWeb {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sample-web"))
            .args(["--port", "0", "--bind", "127.0.0.1", "--node", node])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sample-web");
        let stdout = child.stdout.take().expect("piped stdout");
        let line = timeout(DEADLINE, BufReader::new(stdout).lines().next_line())
            .await
            .expect("sample-web printed no listening line in time")
            .expect("read stdout")
            .expect("sample-web exited before listening");
        let prefix = format!("sample-web node {node} listening on ");
        let addr = line.strip_prefix(&prefix).unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();
        SampleWeb { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for SampleWeb {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn get(url: &str) -> (u16, Option<String>, String) {
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    let node = response.headers().get("x-node").map(|v| v.to_str().unwrap().to_owned());
    (status, node, response.text().await.expect("body"))
}

#[tokio::test]
async fn root_and_unknown_paths_say_hello_with_the_node_name() {
    let web = SampleWeb::start("n1").await;
    let hello = (200, Some("n1".to_owned()), "Hello web from node n1".to_owned());
    assert_eq!(get(&web.url("/")).await, hello);
    assert_eq!(get(&web.url("/some/where?x=1")).await, hello);

    let response = reqwest::Client::new().delete(web.url("/anything")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(response.text().await.unwrap(), "Hello web from node n1");
}

#[tokio::test]
async fn healthz_follows_the_sick_and_healthy_knobs() {
    let web = SampleWeb::start("n2").await;
    let client = reqwest::Client::new();
    assert_eq!(get(&web.url("/healthz")).await, (200, Some("n2".into()), "ok".into()));

    let sick = client.post(web.url("/control/sick")).send().await.unwrap();
    assert_eq!(sick.status(), 200);
    assert_eq!(sick.text().await.unwrap(), "sick");
    assert_eq!(get(&web.url("/healthz")).await, (503, Some("n2".into()), "sick".into()));

    let healthy = client.post(web.url("/control/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    assert_eq!(healthy.text().await.unwrap(), "healthy");
    assert_eq!(get(&web.url("/healthz")).await, (200, Some("n2".into()), "ok".into()));
}

#[tokio::test]
async fn echo_reflects_method_path_query_headers_and_body() {
    let web = SampleWeb::start("n3").await;
    let response = reqwest::Client::new()
        .put(web.url("/echo/deeper?a=1&b=two"))
        .header("X-Forwarded-For", "10.0.0.1")
        .header("X-Forwarded-For", "10.0.0.2")
        .header("X-Custom", "Mixed Case")
        .body("héllo")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-node"], "n3");
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["node"], "n3");
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/echo/deeper");
    assert_eq!(echo["query"], "a=1&b=two");
    assert_eq!(echo["body"], "héllo");
    assert_eq!(echo["headers"]["x-forwarded-for"], json!(["10.0.0.1", "10.0.0.2"]));
    assert_eq!(echo["headers"]["x-custom"], json!(["Mixed Case"]));
    assert_eq!(echo["headers"]["host"], json!([web.addr]));

    let (status, _, body) = get(&web.url("/echo")).await;
    assert_eq!(status, 200);
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], Value::Null);
    assert_eq!(echo["body"], "");
}

#[tokio::test]
async fn status_and_slow_answer_as_asked() {
    let web = SampleWeb::start("n4").await;
    assert_eq!(get(&web.url("/status/418")).await, (418, Some("n4".into()), "status 418".into()));
    assert_eq!(get(&web.url("/slow?ms=20")).await, (200, Some("n4".into()), "slow n4".into()));
}

#[tokio::test]
async fn a_port_in_use_is_a_one_line_error_and_exit_1() {
    let web = SampleWeb::start("first").await;
    let port = web.addr.rsplit(':').next().unwrap();
    let second = Command::new(env!("CARGO_BIN_EXE_sample-web"))
        .args(["--port", port, "--bind", "127.0.0.1"])
        .kill_on_drop(true)
        .output();
    let output = timeout(DEADLINE, second).await.expect("second sample-web did not exit in time").unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr:?}");
    assert!(stderr.starts_with("sample-web: cannot listen on "), "{stderr:?}");
    assert!(stderr.contains(&web.addr), "{stderr:?}");
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let mut web = SampleWeb::start("n5").await;
    let pid = web.child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let status = timeout(DEADLINE, web.child.wait()).await.expect("sample-web did not stop after SIGTERM").unwrap();
    assert_eq!(status.code(), Some(0));
}
