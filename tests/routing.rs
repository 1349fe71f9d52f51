//! Routing and redirect mode through a running lb.

mod common;

use common::{client, Lb, SampleWeb};
use serde_json::json;

/// lb with pools `/`, `/api/`, `/api/v2/`, `/exact`, `/tree/` and `shop.example/`, each with
/// its own backend named after the pattern.
async fn lb_with_pools() -> (Lb, Vec<SampleWeb>) {
    let lb = Lb::start();
    let mut backends = Vec::new();
    for pattern in ["/", "/api/", "/api/v2/", "/exact", "/tree/", "shop.example/"] {
        let web = SampleWeb::start(pattern);
        lb.add_pool(pattern, json!({})).await;
        lb.add_backend(pattern, &web, json!({})).await;
        backends.push(web);
    }
    (lb, backends)
}

async fn served_by(lb: &Lb, host: &str, path: &str) -> (u16, String) {
    let r = client().get(lb.url(path)).header("Host", host).send().await.unwrap();
    let status = r.status().as_u16();
    let node = r.headers().get("x-node").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, node)
}

#[tokio::test]
async fn longest_pattern_and_host_patterns_win() {
    let (lb, _backends) = lb_with_pools().await;
    for (host, path, pool) in [
        ("any.host", "/", "/"),
        ("any.host", "/web/page", "/"),
        ("any.host", "/api/", "/api/"),
        ("any.host", "/api/users", "/api/"),
        ("any.host", "/api/v2/users", "/api/v2/"),
        ("any.host", "/exact", "/exact"),
        ("any.host", "/exact/sub", "/"),
        ("shop.example", "/api/v2/users", "shop.example/"),
        ("shop.example:8080", "/", "shop.example/"),
        ("SHOP.example", "/exact", "shop.example/"),
    ] {
        assert_eq!(served_by(&lb, host, path).await, (200, pool.to_owned()), "{host}{path}");
    }
}

#[tokio::test]
async fn tree_without_slash_is_redirected_to_the_subtree() {
    let (lb, _backends) = lb_with_pools().await;
    let r = client().get(lb.url("/tree?x=1")).send().await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], "/tree/?x=1");
    assert_eq!(served_by(&lb, "h", "/tree/").await, (200, "/tree/".to_owned()));
}

#[tokio::test]
async fn unclean_paths_are_redirected_to_the_clean_one() {
    let (lb, _backends) = lb_with_pools().await;
    let r = client().get(lb.url("/api//users/./x/../y")).send().await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], "/api/users/y");
}

#[tokio::test]
async fn no_matching_pool_is_404() {
    let lb = Lb::start();
    let web = SampleWeb::start("api");
    lb.add_pool("/api/", json!({})).await;
    lb.add_backend("/api/", &web, json!({})).await;
    let r = client().get(lb.url("/web")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "404 page not found\n");
}

#[tokio::test]
async fn redirect_mode_answers_307_to_a_backend() {
    let lb = Lb::start();
    let (a, b) = (SampleWeb::start("a"), SampleWeb::start("b"));
    lb.add_pool("/", json!({"expose_backend": true, "mode": "redirect"})).await;
    lb.add_backend("/", &a, json!({"url_path": "/v2/"})).await;
    lb.add_backend("/", &b, json!({"url_path": "/v2/"})).await;

    let mut locations = std::collections::HashSet::new();
    for _ in 0..40 {
        let r = client().post(lb.url("/a/b?c=1")).body("payload").send().await.unwrap();
        assert_eq!(r.status(), 307);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let server = r.headers()["x-forwarded-server"].to_str().unwrap().to_owned();
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(location, format!("http://{server}/v2/a/b?c=1"));
        assert!(r.text().await.unwrap().len() < 100);
        locations.insert(location);
    }
    let want = [&a, &b].map(|w| format!("http://{}/v2/a/b?c=1", w.addr));
    assert_eq!(locations, want.into());
}

#[tokio::test]
async fn switching_mode_takes_effect_at_once() {
    let lb = Lb::start();
    let a = SampleWeb::start("a");
    lb.add_pool("/", json!({})).await;
    lb.add_backend("/", &a, json!({})).await;
    assert_eq!(client().get(lb.url("/")).send().await.unwrap().status(), 200);
    let r = client()
        .patch(lb.admin_url("/v1/pool"))
        .query(&[("pattern", "/")])
        .json(&json!({ "mode": "redirect" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(lb.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], format!("http://{}/x", a.addr).as_str());
}
