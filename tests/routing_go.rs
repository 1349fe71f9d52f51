//! Go 1.22 ServeMux routing, end to end through a running lb: methods, hosts, wildcards,
//! precedence, redirects, 405, conflicts and invalid patterns, from the examples of the net/http
//! package docs and the Go 1.22 release notes.
//!
//! Every pool is in redirect mode with one shared sample-web backend whose `url_path` names the
//! pool (`/p3/`), so the `Location` of each answer says which pool matched.

mod common;

use common::{client, Lb, SampleWeb};
use reqwest::Method;
use serde_json::json;

/// Starts lb with one redirect pool per pattern; pool `i` redirects under `/p{i}/`.
async fn lb_with(patterns: &[&str], web: &SampleWeb) -> Lb {
    let lb = Lb::start();
    for (i, pattern) in patterns.iter().enumerate() {
        lb.add_pool(pattern, json!({"mode": "redirect"})).await;
        lb.add_backend(pattern, web, json!({"url_path": format!("/p{i}/")})).await;
    }
    lb
}

/// What lb answered: the pattern that matched (from the redirect), or the status and a header.
async fn answer(lb: &Lb, patterns: &[&str], web: &SampleWeb, method: &str, host: &str, path: &str) -> String {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let r = client().request(method, lb.url(path)).header("Host", host).send().await.unwrap();
    let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let location = header("location");
    match r.status().as_u16() {
        // The router's own redirects are paths; redirect mode's go to the backend.
        307 if location.starts_with('/') => format!("307 {location}"),
        307 => {
            let rest = location.strip_prefix(&format!("http://{}/p", web.addr)).unwrap_or_else(|| panic!("{location}"));
            let (i, sent) = rest.split_once('/').unwrap();
            let pattern = patterns[i.parse::<usize>().unwrap()];
            // The backend gets the path as the client sent it.
            assert_eq!(format!("/{sent}"), path, "{pattern} rewrote the path");
            pattern.to_owned()
        }
        405 => format!("405 {}", header("allow")),
        status => status.to_string(),
    }
}

#[tokio::test]
async fn requests_go_where_go_sends_them() {
    let web = SampleWeb::start("web");
    let patterns = [
        "/",
        "/{$}",
        "/index.html",
        "GET /static/",
        "example.com/",
        "/b/{bucket}/o/{objectname...}",
        "GET /task/{id}/",
        "/task/{id}",
        "/posts/latest",
        "/posts/{id}",
        "/tree/",
    ];
    let lb = lb_with(&patterns, &web).await;
    for (method, host, path, want) in [
        // A trailing slash matches the subtree; {$} only the end; longest literal wins.
        ("GET", "h", "/", "/{$}"),
        ("GET", "h", "/other", "/"),
        ("GET", "h", "/index.html", "/index.html"),
        ("GET", "h", "/static/css/site.css", "GET /static/"),
        // GET also matches HEAD; a method-less pattern matches every method.
        ("HEAD", "h", "/static/x", "GET /static/"),
        ("POST", "h", "/static/x", "/"),
        // A host pattern wins for its host, whatever the port.
        ("GET", "example.com", "/index.html", "example.com/"),
        ("GET", "example.com:8080", "/", "example.com/"),
        ("GET", "other.com", "/index.html", "/index.html"),
        // {name} is one segment, {name...} the rest.
        ("GET", "h", "/b/mybucket/o/some/object/name", "/b/{bucket}/o/{objectname...}"),
        ("GET", "h", "/task/7/", "GET /task/{id}/"),
        ("GET", "h", "/task/7/sub/tree", "GET /task/{id}/"),
        ("PUT", "h", "/task/7", "/task/{id}"),
        // The most specific pattern wins.
        ("GET", "h", "/posts/latest", "/posts/latest"),
        ("GET", "h", "/posts/42", "/posts/{id}"),
        // Segments are matched unescaped: %2F stays inside its segment.
        ("GET", "h", "/posts/a%2Fb", "/posts/{id}"),
        // /tree to /tree/, query kept; unclean paths to the clean one.
        ("GET", "h", "/tree", "307 /tree/"),
        ("GET", "h", "/tree?x=1", "307 /tree/?x=1"),
        ("GET", "h", "/a//b/./c/../d", "307 /a/b/d"),
    ] {
        assert_eq!(answer(&lb, &patterns, &web, method, host, path).await, want, "{method} {host}{path}");
    }
}

#[tokio::test]
async fn a_path_with_only_other_methods_is_405_with_allow() {
    let web = SampleWeb::start("web");
    let patterns = ["GET /items/{id}", "DELETE /items/{id}", "POST /items/"];
    let lb = lb_with(&patterns, &web).await;
    for (method, path, want) in [
        ("GET", "/items/1", "GET /items/{id}"),
        ("HEAD", "/items/1", "GET /items/{id}"),
        ("DELETE", "/items/1", "DELETE /items/{id}"),
        ("POST", "/items/1", "POST /items/"),
        ("PATCH", "/items/1", "405 DELETE, GET, HEAD, POST"),
        ("PUT", "/items/", "405 POST"),
        ("GET", "/nothing", "404"),
    ] {
        assert_eq!(answer(&lb, &patterns, &web, method, "h", path).await, want, "{method} {path}");
    }
}

async fn add_pool_error(lb: &Lb, pattern: &str) -> (u16, String) {
    let r = client().post(lb.admin_url("/v1/pools")).json(&json!({ "pattern": pattern })).send().await.unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap();
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn conflicting_patterns_are_refused_with_both_named_and_an_example() {
    let lb = Lb::start();
    lb.add_pool("/a/{x}", json!({})).await;
    let (status, msg) = add_pool_error(&lb, "/{y}/b").await;
    assert_eq!(status, 409);
    for part in ["/{y}/b", "/a/{x}", "conflicts", "\"/a/b\""] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
    lb.add_pool("GET /posts/{id}", json!({})).await;
    let (status, msg) = add_pool_error(&lb, "GET /posts/{slug}").await;
    assert_eq!(status, 409, "{msg}");
    assert!(msg.contains("GET /posts/{id}"), "{msg}");
    // More specific is not a conflict.
    lb.add_pool("GET /posts/latest", json!({})).await;
    lb.add_pool("/posts/{id}", json!({})).await;
}

#[tokio::test]
async fn invalid_patterns_are_refused_with_gos_reason() {
    let lb = Lb::start();
    for (pattern, says) in [
        ("G@T /x", "invalid method"),
        ("/a/{x", "bad wildcard segment"),
        ("/{x...}/a", "not at end"),
        ("/{a}/{a}", "duplicate wildcard name"),
        ("/{1a}", "bad wildcard name"),
        ("", "empty pattern"),
        ("GET", "host/path missing /"),
    ] {
        let (status, msg) = add_pool_error(&lb, pattern).await;
        assert_eq!(status, 400, "{pattern:?}: {msg}");
        assert!(msg.contains(says), "{pattern:?}: {msg:?} does not say {says:?}");
    }
}

#[tokio::test]
async fn wildcard_values_are_logged_at_debug_level() {
    let web = SampleWeb::start("web");
    let lb = Lb::start_logging("info,lb::data_plane=debug");
    lb.add_pool("GET /b/{bucket}/o/{name...}", json!({"mode": "redirect"})).await;
    lb.add_backend("GET /b/{bucket}/o/{name...}", &web, json!({})).await;
    let r = client().get(lb.url("/b/photos/o/2026/cat.png")).send().await.unwrap();
    assert_eq!(r.status(), 307);
    let want = "GET /b/photos/o/2026/cat.png -> pool GET /b/{bucket}/o/{name...} bucket=photos name=2026/cat.png";
    common::eventually("the routing line in lb's log", || async { lb.stderr.text().contains(want).then_some(()) })
        .await;
}
