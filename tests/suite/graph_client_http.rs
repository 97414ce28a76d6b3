//! The Graph client against wiremock servers that answer with the documentation's example bodies: paging,
//! delta, throttling and retries, token refresh, preconditions, ranged downloads and upload sessions.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use galleryfs::remote::auth::{AuthError, StaticToken, TokenSource};
use galleryfs::remote::download::ByteStream;
use galleryfs::remote::models::{ConflictBehavior, DriveItem, FileSystemInfo, ItemPatch};
use galleryfs::remote::upload::FRAGMENT_ALIGN;
use galleryfs::remote::{
    DeltaStart, DownloadUrl, Endpoints, GraphClient, GraphError, QuickXorHash, RetryPolicy, ThumbnailRef, UploadEvent,
    UploadJob, UploadOptions, UploadTarget,
};
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "test-access-token";

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(10),
        default_throttle: Duration::from_millis(50),
        max_throttle_retries: 4,
        max_throttle_wait: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
    }
}

fn client_for(server: &MockServer, tokens: Arc<dyn TokenSource>) -> GraphClient {
    let endpoints = Endpoints {
        graph_url: format!("{}/v1.0", server.uri()),
        ..Default::default()
    };
    GraphClient::new(endpoints, tokens, fast_policy()).expect("client")
}

async fn setup() -> (MockServer, GraphClient) {
    let server = MockServer::start().await;
    let client = client_for(&server, Arc::new(StaticToken(TOKEN.into())));
    (server, client)
}

fn item_json(id: &str, name: &str) -> Value {
    json!({"id": id, "name": name, "eTag": format!("\"{{{id}}},1\""), "size": 10, "file": {"mimeType": "image/jpeg"}})
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.expect("recording on")
}

async fn collect(mut s: ByteStream) -> Result<Vec<u8>, GraphError> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Exact header match (wiremock's `header` splits values at commas, which breaks eTags like `"{X},1"`).
fn header_is(name: &'static str, value: impl Into<String>) -> impl Fn(&Request) -> bool + Send + Sync + 'static {
    let value = value.into();
    move |r: &Request| r.headers.get(name).and_then(|v| v.to_str().ok()) == Some(value.as_str())
}

fn has_auth(r: &Request) -> bool {
    r.headers.contains_key("authorization")
}

#[tokio::test]
async fn children_follow_next_links_across_three_pages() {
    let (server, client) = setup().await;
    let base = format!("{}/v1.0/me/drive/items/F!1/children", server.uri());
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/items/F!1/children"))
        .and(query_param("$top", "1000"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [item_json("A!1", "a.jpg"), item_json("A!2", "b.jpg")],
            "@odata.nextLink": format!("{base}?$skiptoken=p2")
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(query_param("$skiptoken", "p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [item_json("A!3", "c.jpg")],
            "@odata.nextLink": format!("{base}?$skiptoken=p3")
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(query_param("$skiptoken", "p3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [item_json("A!4", "d.jpg"), item_json("A!5", "e.jpg")]
        })))
        .expect(1)
        .mount(&server)
        .await;

    let items = client.children("F!1").await.unwrap();
    let names: Vec<_> = items.iter().map(|i| i.name.clone().unwrap()).collect();
    assert_eq!(names, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]);
    assert!(
        requests(&server).await.iter().all(has_auth),
        "Graph calls carry the bearer token"
    );
}

#[tokio::test]
async fn delta_dedups_last_wins_returns_delta_link_and_maps_410_to_resync() {
    let (server, client) = setup().await;
    let uri = server.uri();
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/root/delta"))
        .and(query_param_is_missing("token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [item_json("A!1", "old.jpg"), item_json("A!2", "b.jpg")],
            "@odata.nextLink": format!("{uri}/v1.0/me/drive/root/delta?token=page2")
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(query_param("token", "page2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [item_json("A!1", "renamed.jpg"), {"id": "A!3", "deleted": {}, "parentReference": {"id": "F!1"}}],
            "@odata.deltaLink": format!("{uri}/v1.0/me/drive/root/delta?token=stored")
        })))
        .mount(&server)
        .await;
    let round = client.delta(DeltaStart::Full { folder_id: None }).await.unwrap();
    assert_eq!(round.pages, 2);
    assert_eq!(round.delta_link, format!("{uri}/v1.0/me/drive/root/delta?token=stored"));
    let got: Vec<_> = round.items.iter().map(|i| (i.id.as_str(), i.is_deleted())).collect();
    assert_eq!(got, [("A!2", false), ("A!1", false), ("A!3", true)]);
    assert_eq!(round.items[1].name.as_deref(), Some("renamed.jpg"));

    // The stored deltaLink now answers 410 Gone with a Location to restart from.
    let restart = format!("{uri}/v1.0/me/drive/root/delta?token=restart");
    Mock::given(method("GET"))
        .and(query_param("token", "stored"))
        .respond_with(
            ResponseTemplate::new(410)
                .insert_header("Location", restart.as_str())
                .set_body_json(json!({"error": {"code": "resyncRequired", "message": "Resync required. Replace any local items with the server's version.", "innerError": {"date": "2020-01-01T00:00:00", "request-id": "r"}}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(query_param("token", "restart"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [item_json("A!2", "b.jpg")],
            "@odata.deltaLink": format!("{uri}/v1.0/me/drive/root/delta?token=fresh")
        })))
        .mount(&server)
        .await;
    let err = client
        .delta(DeltaStart::Link(round.delta_link.clone()))
        .await
        .unwrap_err();
    let GraphError::ResyncRequired { location, .. } = &err else {
        panic!("expected ResyncRequired, got {err:?}")
    };
    assert_eq!(location.as_deref(), Some(restart.as_str()));
    assert!(err.has_code("resyncRequired"));
    let again = client.delta_resync(location.as_deref()).await.unwrap();
    assert_eq!(again.items.len(), 1);
    assert!(again.delta_link.ends_with("token=fresh"));
}

#[tokio::test]
async fn delta_latest_sends_token_latest() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/items/G!7/delta"))
        .and(query_param("token", "latest"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [], "@odata.deltaLink": "http://x/delta?token=now"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let round = client
        .delta(DeltaStart::Latest {
            folder_id: Some("G!7".into()),
        })
        .await
        .unwrap();
    assert!(round.items.is_empty());
    assert_eq!(round.delta_link, "http://x/delta?token=now");
}

#[tokio::test]
async fn retry_after_pauses_a_concurrent_request_too() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "d1", "driveType": "personal",
            "quota": {"total": 100, "used": 10, "remaining": 90, "deleted": 0, "state": "normal"}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/items/X!1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(item_json("X!1", "x.jpg")))
        .mount(&server)
        .await;

    let start = Instant::now();
    let first = {
        let c = client.clone();
        tokio::spawn(async move { c.drive().await })
    };
    // Wait until the 429 has been seen and the gate is closed.
    while client.throttled_until().is_none() {
        assert!(start.elapsed() < Duration::from_secs(2), "429 never closed the gate");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second_started = start.elapsed();
    let item = client.item("X!1").await.unwrap();
    let second_done = start.elapsed();
    assert_eq!(item.name.as_deref(), Some("x.jpg"));
    assert!(
        second_done >= Duration::from_millis(950),
        "a concurrent request went out during the pause (started {second_started:?}, done {second_done:?})"
    );
    let drive = first.await.unwrap().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(950));
    assert_eq!(drive.quota.unwrap().remaining, Some(90));
    assert!(client.throttled_until().is_none(), "gate reopened");
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn service_unavailable_then_success() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/special/photos"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/special/photos"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "P!1", "name": "Pictures", "folder": {"childCount": 3}, "specialFolder": {"name": "photos"}
        })))
        .mount(&server)
        .await;
    let item = client.special_folder("photos").await.unwrap();
    assert_eq!(item.name.as_deref(), Some("Pictures"));
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"error": {"code": "generalException", "message": "x"}})),
        )
        .mount(&server)
        .await;
    let err = client.item("A!1").await.unwrap_err();
    assert!(matches!(err, GraphError::Service { status: 500, .. }), "{err:?}");
    assert_eq!(err.error_code(), Some("generalException"));
    assert!(err.is_retryable());
    assert_eq!(requests(&server).await.len(), fast_policy().max_attempts as usize);
}

#[tokio::test]
async fn other_client_errors_are_not_retried() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"error": {"code": "itemNotFound", "message": "Item does not exist"}})),
        )
        .mount(&server)
        .await;
    let err = client.item("A!1").await.unwrap_err();
    assert!(matches!(err, GraphError::NotFound { .. }), "{err:?}");
    assert_eq!(client.child_by_name("F!1", "missing.jpg").await.unwrap(), None);
    assert_eq!(requests(&server).await.len(), 2);
}

/// Hands out `old` until asked to refresh, then `new`; counts refreshes.
struct RotatingToken {
    refreshes: AtomicU32,
}

#[async_trait]
impl TokenSource for RotatingToken {
    async fn access_token(&self) -> Result<String, AuthError> {
        Ok(if self.refreshes.load(Ordering::SeqCst) == 0 {
            "old"
        } else {
            "new"
        }
        .into())
    }
    async fn refresh_after_rejection(&self, rejected: &str) -> Result<String, AuthError> {
        assert_eq!(rejected, "old");
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Ok("new".into())
    }
}

#[tokio::test]
async fn unauthorized_refreshes_once_then_retries() {
    let server = MockServer::start().await;
    let tokens = Arc::new(RotatingToken {
        refreshes: AtomicU32::new(0),
    });
    let client = client_for(&server, tokens.clone());
    Mock::given(header("authorization", "Bearer old"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"code": "InvalidAuthenticationToken", "message": "expired"}})),
        )
        .mount(&server)
        .await;
    Mock::given(header("authorization", "Bearer new"))
        .respond_with(ResponseTemplate::new(200).set_body_json(item_json("A!1", "a.jpg")))
        .mount(&server)
        .await;
    client.item("A!1").await.unwrap();
    assert_eq!(tokens.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn unauthorized_twice_fails_after_one_refresh() {
    let server = MockServer::start().await;
    let tokens = Arc::new(RotatingToken {
        refreshes: AtomicU32::new(0),
    });
    let client = client_for(&server, tokens.clone());
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let err = client.item("A!1").await.unwrap_err();
    assert!(matches!(err, GraphError::Unauthorized { .. }), "{err:?}");
    assert_eq!(tokens.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(requests(&server).await.len(), 2);

    // A token source that cannot refresh surfaces its sign-in error.
    let fixed = client_for(&server, Arc::new(StaticToken("x".into())));
    let err = fixed.item("A!1").await.unwrap_err();
    assert!(
        matches!(err, GraphError::Auth(AuthError::SignInAgain { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn stale_if_match_is_precondition_failed() {
    let (server, client) = setup().await;
    Mock::given(method("DELETE"))
        .and(path("/v1.0/me/drive/items/A!1"))
        .and(header_is("if-match", "\"{A!1},1\""))
        .respond_with(ResponseTemplate::new(412).set_body_json(
            json!({"error": {"code": "resourceModified", "message": "ETag does not match current item's value"}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1.0/me/drive/items/A!1"))
        .and(header_is("if-match", "\"{A!1},1\""))
        .respond_with(
            ResponseTemplate::new(412).set_body_json(json!({"error": {"code": "resourceModified", "message": "x"}})),
        )
        .mount(&server)
        .await;
    let err = client.delete("A!1", Some("\"{A!1},1\"")).await.unwrap_err();
    assert!(matches!(err, GraphError::PreconditionFailed { .. }), "{err:?}");
    let patch = ItemPatch {
        name: Some("new.jpg".into()),
        ..Default::default()
    };
    let err = client.update("A!1", &patch, Some("\"{A!1},1\"")).await.unwrap_err();
    assert!(matches!(err, GraphError::PreconditionFailed { .. }), "{err:?}");
    assert_eq!(requests(&server).await.len(), 2, "412 is not retried");
}

#[tokio::test]
async fn update_create_folder_restore_send_documented_bodies() {
    let (server, client) = setup().await;
    Mock::given(method("PATCH"))
        .and(path("/v1.0/me/drive/items/A!1"))
        .and(body_partial_json(
            json!({"name": "b.jpg", "parentReference": {"id": "F!2"},
            "fileSystemInfo": {"lastModifiedDateTime": "2024-03-15T14:22:33Z"}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(item_json("A!1", "b.jpg")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/me/drive/items/F!1/children"))
        .and(body_partial_json(
            json!({"name": "Album", "folder": {}, "@microsoft.graph.conflictBehavior": "fail"}),
        ))
        .respond_with(
            ResponseTemplate::new(409).set_body_json(json!({"error": {"code": "nameAlreadyExists", "message": "x"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/me/drive/items/A!9/restore"))
        .and(body_partial_json(json!({"parentReference": {"id": "F!1"}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(item_json("A!9", "back.jpg")))
        .expect(1)
        .mount(&server)
        .await;
    let patch = ItemPatch {
        name: Some("b.jpg".into()),
        parent_id: Some("F!2".into()),
        file_system_info: Some(FileSystemInfo {
            last_modified_date_time: Some("2024-03-15T14:22:33Z".parse().unwrap()),
            ..Default::default()
        }),
    };
    assert_eq!(
        client.update("A!1", &patch, None).await.unwrap().name.as_deref(),
        Some("b.jpg")
    );
    let err = client
        .create_folder("F!1", "Album", ConflictBehavior::Fail)
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Conflict { .. }) && err.has_code("nameAlreadyExists"));
    let restored = client.restore("A!9", Some("F!1"), None).await.unwrap();
    assert_eq!(restored.name.as_deref(), Some("back.jpg"));
}

#[tokio::test]
async fn path_segments_are_percent_encoded() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(item_json("A!1", "#1 100%.jpg")))
        .mount(&server)
        .await;
    client.item_by_path("/Samsung Gallery/#1 100%.jpg").await.unwrap();
    client.child_by_name("F!1", "#1 100%.jpg").await.unwrap();
    let reqs = requests(&server).await;
    assert_eq!(
        reqs[0].url.path(),
        "/v1.0/me/drive/root:/Samsung%20Gallery/%231%20100%25.jpg:"
    );
    assert_eq!(reqs[0].url.query(), None);
    assert_eq!(reqs[1].url.path(), "/v1.0/me/drive/items/F!1:/%231%20100%25.jpg:");
}

/// The file the download host serves: bytes 0..100.
fn file_bytes() -> Vec<u8> {
    (0u8..100).collect()
}

#[tokio::test]
async fn download_follows_302_and_sends_range_without_authorization() {
    let (server, client) = setup().await;
    let dl = format!("{}/dl/abc?sig=SECRET", server.uri());
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/items/A!1/content"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", dl.as_str()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/dl/abc"))
        .and(header("range", "bytes=10-19"))
        .respond_with(
            ResponseTemplate::new(206)
                .insert_header("Content-Range", "bytes 10-19/100")
                .set_body_bytes(file_bytes()[10..20].to_vec()),
        )
        .mount(&server)
        .await;
    let url = client.download_url("A!1").await.unwrap();
    assert_eq!(url.as_secret_str(), dl);
    assert!(!format!("{url:?}").contains("SECRET"));
    let got = collect(client.get_range(&url, 10, 10).await.unwrap()).await.unwrap();
    assert_eq!(got, file_bytes()[10..20]);
    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 2);
    assert!(has_auth(&reqs[0]), "/content is a Graph call");
    assert!(
        !has_auth(&reqs[1]),
        "the pre-authenticated URL must not get the bearer token"
    );
}

#[tokio::test]
async fn download_host_ignoring_range_is_skipped_forward() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/dl/full"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(file_bytes()))
        .mount(&server)
        .await;
    let url = DownloadUrl::pre_authenticated(format!("{}/dl/full", server.uri()));
    let got = collect(client.get_range(&url, 30, 10).await.unwrap()).await.unwrap();
    assert_eq!(got, file_bytes()[30..40]);
    let tail = collect(client.get_range(&url, 95, 10).await.unwrap()).await.unwrap();
    assert_eq!(tail, file_bytes()[95..100], "short only at end of file");
    let err = client.get_range(&url, 100, 10).await.err().unwrap();
    assert!(
        matches!(err, GraphError::RangeNotSatisfiable { total: Some(100), .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn range_past_the_end_is_416_with_total() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/dl/x"))
        .respond_with(ResponseTemplate::new(416).insert_header("Content-Range", "bytes */100"))
        .mount(&server)
        .await;
    let url = DownloadUrl::pre_authenticated(format!("{}/dl/x", server.uri()));
    let err = client.get_range(&url, 200, 10).await.err().unwrap();
    assert!(
        matches!(err, GraphError::RangeNotSatisfiable { total: Some(100), .. }),
        "{err:?}"
    );
    assert_eq!(requests(&server).await.len(), 1, "416 is not retried");
}

#[tokio::test]
async fn wrong_content_range_and_short_body_are_errors() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/dl/wrong"))
        .respond_with(
            ResponseTemplate::new(206)
                .insert_header("Content-Range", "bytes 0-9/100")
                .set_body_bytes(file_bytes()[0..10].to_vec()),
        )
        .mount(&server)
        .await;
    let url = DownloadUrl::pre_authenticated(format!("{}/dl/wrong", server.uri()));
    let err = client.get_range(&url, 10, 10).await.err().unwrap();
    assert!(matches!(err, GraphError::Decode(_)), "{err:?}");
}

#[tokio::test]
async fn stale_download_url_is_replaced_once() {
    let (server, client) = setup().await;
    let fresh = format!("{}/dl/fresh", server.uri());
    Mock::given(method("GET"))
        .and(path("/dl/stale"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/items/A!1/content"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", fresh.as_str()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/dl/fresh"))
        .respond_with(
            ResponseTemplate::new(206)
                .insert_header("Content-Range", "bytes 0-4/100")
                .set_body_bytes(file_bytes()[0..5].to_vec()),
        )
        .mount(&server)
        .await;
    let mut slot = Some(DownloadUrl::pre_authenticated(format!("{}/dl/stale", server.uri())));
    let got = collect(client.item_range("A!1", &mut slot, 0, 5).await.unwrap())
        .await
        .unwrap();
    assert_eq!(got, file_bytes()[0..5]);
    assert_eq!(slot.unwrap().as_secret_str(), fresh);
}

#[tokio::test]
async fn whole_download_is_verified_against_quickxorhash() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/dl/whole"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(file_bytes()))
        .mount(&server)
        .await;
    let mut item: DriveItem = serde_json::from_value(json!({
        "id": "A!1", "size": 100,
        "file": {"hashes": {"quickXorHash": QuickXorHash::of(&file_bytes())}},
        "@microsoft.graph.downloadUrl": format!("{}/dl/whole", server.uri())
    }))
    .unwrap();
    let mut sink = Vec::new();
    assert_eq!(client.download_item(&item, &mut sink).await.unwrap(), 100);
    assert_eq!(sink, file_bytes());

    item.file.as_mut().unwrap().hashes.as_mut().unwrap().quick_xor_hash = Some(QuickXorHash::of(b"other"));
    let err = client.download_item(&item, &mut Vec::new()).await.unwrap_err();
    assert!(matches!(err, GraphError::HashMismatch { .. }), "{err:?}");
    assert!(!has_auth(&requests(&server).await[0]));
}

#[tokio::test]
async fn thumbnails_list_custom_and_content_without_bearer() {
    let (server, client) = setup().await;
    let thumb_url = format!("{}/thumb/t1?sig=x", server.uri());
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/items/A!1/thumbnails"))
        .and(query_param_is_missing("select"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [{"id": "0",
            "small": {"height": 64, "width": 96, "url": thumb_url},
            "medium": {"height": 117, "width": 176, "url": thumb_url},
            "large": {"height": 533, "width": 800, "url": thumb_url}}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/items/A!1/thumbnails"))
        .and(query_param("select", "c256x256"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [{"id": "0",
            "c256x256": {"height": 192, "width": 256, "url": thumb_url}}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/items/A!1/thumbnails/0/medium/content"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", thumb_url.as_str()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/thumb/t1"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"\x89PNG-ish".to_vec()))
        .mount(&server)
        .await;
    let sets = client.thumbnails("A!1").await.unwrap();
    assert_eq!(sets[0].medium.as_ref().unwrap().width, Some(176));
    let custom = client.thumbnail_custom("A!1", "c256x256").await.unwrap().unwrap();
    assert_eq!((custom.width, custom.height), (Some(256), Some(192)));
    let bytes = client.thumbnail_content(ThumbnailRef::Url(&thumb_url)).await.unwrap();
    assert_eq!(&bytes[..], b"\x89PNG-ish");
    let bytes = client
        .thumbnail_content(ThumbnailRef::Set {
            item_id: "A!1",
            set_id: "0",
            size: "medium",
        })
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"\x89PNG-ish");
    for r in requests(&server).await {
        assert_eq!(has_auth(&r), r.url.path().starts_with("/v1.0/"), "{}", r.url.path());
    }
}

const BIG_TOTAL: u64 = 2 * FRAGMENT_ALIGN + 1000;

fn big_file() -> Bytes {
    Bytes::from((0..BIG_TOTAL).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

async fn mount_session(server: &MockServer) -> String {
    let upload_url = format!("{}/up/sess1?sig=SECRET", server.uri());
    Mock::given(method("POST"))
        .and(path("/v1.0/me/drive/items/P!1:/big%20file.jpg:/createUploadSession"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "uploadUrl": upload_url, "expirationDateTime": "2030-01-29T09:21:55.523Z"
        })))
        .mount(server)
        .await;
    upload_url
}

fn range(a: u64, b: u64) -> String {
    format!("bytes {a}-{b}/{BIG_TOTAL}")
}

fn small_opts() -> UploadOptions {
    UploadOptions {
        fragment_size: FRAGMENT_ALIGN,
        simple_limit: 1024,
        ..Default::default()
    }
}

fn new_child_job() -> UploadJob {
    UploadJob {
        target: UploadTarget::NewChild {
            parent_id: "P!1".into(),
            name: "big file.jpg".into(),
        },
        file_system_info: Some(FileSystemInfo {
            last_modified_date_time: Some("2024-03-15T14:22:33Z".parse().unwrap()),
            ..Default::default()
        }),
        conflict: ConflictBehavior::Replace,
        if_match: None,
        resume_from: None,
    }
}

#[tokio::test]
async fn upload_session_sends_aligned_fragments_without_authorization() {
    let (server, client) = setup().await;
    mount_session(&server).await;
    let f = FRAGMENT_ALIGN;
    Mock::given(method("PUT"))
        .and(path("/up/sess1"))
        .and(header_is("content-range", range(0, f - 1)))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"nextExpectedRanges": [format!("{f}-")]})))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/up/sess1"))
        .and(header_is("content-range", range(f, 2 * f - 1)))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"nextExpectedRanges": [format!("{}-", 2 * f)]})))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/up/sess1"))
        .and(header_is("content-range", range(2 * f, BIG_TOTAL - 1)))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": "N!1", "name": "big file.jpg", "size": BIG_TOTAL, "file": {}})),
        )
        .mount(&server)
        .await;

    let file = big_file();
    let mut progress = Vec::new();
    let mut sessions = 0;
    let item = client
        .upload_file(&file, &new_child_job(), &small_opts(), &mut |ev| match ev {
            UploadEvent::SessionStarted(s) => {
                assert!(s.upload_url.is_some());
                sessions += 1
            }
            UploadEvent::Progress { sent, .. } => progress.push(sent),
        })
        .await
        .unwrap();
    assert_eq!(item.id, "N!1");
    assert_eq!(sessions, 1);
    assert_eq!(progress, [0, f, 2 * f, BIG_TOTAL]);

    let reqs = requests(&server).await;
    let create: Value = reqs[0].body_json().unwrap();
    assert_eq!(create["item"]["@microsoft.graph.conflictBehavior"], "replace");
    assert_eq!(create["item"]["name"], "big file.jpg");
    assert_eq!(create["item"]["fileSize"], BIG_TOTAL);
    assert_eq!(
        create["item"]["fileSystemInfo"]["lastModifiedDateTime"],
        "2024-03-15T14:22:33Z"
    );
    assert!(has_auth(&reqs[0]));
    let puts: Vec<_> = reqs.iter().filter(|r| r.method.as_str() == "PUT").collect();
    assert_eq!(puts.len(), 3);
    let mut rebuilt = Vec::new();
    for p in &puts {
        assert!(!has_auth(p), "fragment PUTs must not carry the bearer token");
        rebuilt.extend_from_slice(&p.body);
    }
    assert_eq!(puts[0].body.len() as u64 % FRAGMENT_ALIGN, 0);
    assert_eq!(puts[1].body.len() as u64, FRAGMENT_ALIGN);
    assert_eq!(rebuilt, file);
}

#[tokio::test]
async fn upload_resumes_from_status_after_416() {
    let (server, client) = setup().await;
    mount_session(&server).await;
    let f = FRAGMENT_ALIGN;
    Mock::given(method("PUT"))
        .and(header_is("content-range", range(0, f - 1)))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"nextExpectedRanges": [format!("{f}-")]})))
        .mount(&server)
        .await;
    // The service already has the second fragment (an earlier attempt got through): 416 fragmentOverlap.
    Mock::given(method("PUT"))
        .and(header_is("content-range", range(f, 2 * f - 1)))
        .respond_with(
            ResponseTemplate::new(416).set_body_json(json!({"error": {"code": "invalidRange",
            "message": "x", "innererror": {"code": "fragmentOverlap"}}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/up/sess1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "expirationDateTime": "2030-01-29T09:21:55.523Z", "nextExpectedRanges": [format!("{}-", 2 * f)]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(header_is("content-range", range(2 * f, BIG_TOTAL - 1)))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": "N!1", "name": "big file.jpg", "size": BIG_TOTAL, "file": {"hashes": {"quickXorHash": QuickXorHash::of(&big_file())}}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let item = client
        .upload_file(&big_file(), &new_child_job(), &small_opts(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(item.id, "N!1");
    let get = requests(&server)
        .await
        .into_iter()
        .find(|r| r.method.as_str() == "GET")
        .unwrap();
    assert!(
        !has_auth(&get),
        "status query goes to the pre-authenticated URL without a token"
    );
}

#[tokio::test]
async fn saved_session_is_resumed_where_the_service_left_off() {
    let (server, client) = setup().await;
    let f = FRAGMENT_ALIGN;
    let url = format!("{}/up/saved", server.uri());
    Mock::given(method("GET"))
        .and(path("/up/saved"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"nextExpectedRanges": [format!("{}-", 2 * f)]})))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/up/saved"))
        .and(header_is("content-range", range(2 * f, BIG_TOTAL - 1)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "N!1", "size": BIG_TOTAL, "file": {"hashes": {"quickXorHash": QuickXorHash::of(&big_file())}}})))
        .expect(1)
        .mount(&server)
        .await;
    let mut job = new_child_job();
    job.resume_from = Some(galleryfs::remote::models::UploadSession {
        upload_url: Some(url),
        ..Default::default()
    });
    let item = client
        .upload_file(&big_file(), &job, &small_opts(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(item.id, "N!1");
    assert!(
        requests(&server).await.iter().all(|r| r.method.as_str() != "POST"),
        "no new session was created"
    );
}

#[tokio::test]
async fn vanished_session_is_upload_session_gone() {
    let (server, client) = setup().await;
    mount_session(&server).await;
    Mock::given(method("PUT"))
        .and(path("/up/sess1"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"error": {"code": "itemNotFound", "message": "x"}})),
        )
        .mount(&server)
        .await;
    let err = client
        .upload_file(&big_file(), &new_child_job(), &small_opts(), &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::UploadSessionGone), "{err:?}");
}

#[tokio::test]
async fn small_and_empty_files_use_simple_put_then_set_times() {
    let (server, client) = setup().await;
    Mock::given(method("PUT"))
        .and(path("/v1.0/me/drive/items/P!1:/big%20file.jpg:/content"))
        .and(query_param("@microsoft.graph.conflictBehavior", "replace"))
        .respond_with(ResponseTemplate::new(201).set_body_json(item_json("N!2", "big file.jpg")))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1.0/me/drive/items/N!2"))
        .and(body_partial_json(
            json!({"fileSystemInfo": {"lastModifiedDateTime": "2024-03-15T14:22:33Z"}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(item_json("N!2", "big file.jpg")))
        .expect(2)
        .mount(&server)
        .await;
    for content in [Bytes::from_static(b"hello"), Bytes::new()] {
        let item = client
            .upload_file(&content, &new_child_job(), &UploadOptions::default(), &mut |_| {})
            .await
            .unwrap();
        assert_eq!(item.id, "N!2");
    }
    let reqs = requests(&server).await;
    assert_eq!(reqs[0].body, b"hello");
    assert!(reqs[2].body.is_empty());
    assert!(reqs.iter().all(has_auth));
}

#[tokio::test]
async fn broken_off_range_resumes_from_the_next_missing_byte() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/dl/flaky"))
        .and(header_is("range", "bytes=10-19"))
        .respond_with(
            ResponseTemplate::new(206)
                .insert_header("Content-Range", "bytes 10-19/100")
                .set_body_bytes(file_bytes()[10..15].to_vec()),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/dl/flaky"))
        .and(header_is("range", "bytes=15-19"))
        .respond_with(
            ResponseTemplate::new(206)
                .insert_header("Content-Range", "bytes 15-19/100")
                .set_body_bytes(file_bytes()[15..20].to_vec()),
        )
        .expect(1)
        .mount(&server)
        .await;
    let url = DownloadUrl::pre_authenticated(format!("{}/dl/flaky", server.uri()));
    let got = collect(client.get_range(&url, 10, 10).await.unwrap()).await.unwrap();
    assert_eq!(got, file_bytes()[10..20]);
}

#[tokio::test]
async fn range_that_keeps_breaking_off_ends_in_an_error_not_short_data() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/dl/short"))
        .respond_with(
            ResponseTemplate::new(206)
                .insert_header("Content-Range", "bytes 10-19/100")
                .set_body_bytes(Vec::new()),
        )
        .mount(&server)
        .await;
    let url = DownloadUrl::pre_authenticated(format!("{}/dl/short", server.uri()));
    let err = collect(client.get_range(&url, 10, 10).await.unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Truncated { .. }), "{err:?}");
    assert_eq!(requests(&server).await.len(), fast_policy().max_attempts as usize);
}

#[tokio::test]
async fn whole_download_shorter_than_the_item_is_an_error() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/dl/half"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(file_bytes()))
        .mount(&server)
        .await;
    let item: DriveItem = serde_json::from_value(json!({
        "id": "A!1", "size": 200, "file": {},
        "@microsoft.graph.downloadUrl": format!("{}/dl/half", server.uri())
    }))
    .unwrap();
    let err = client.download_item(&item, &mut Vec::new()).await.unwrap_err();
    assert!(
        matches!(
            err,
            GraphError::Truncated {
                expected: 200,
                received: 100
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn long_retry_after_fails_fast_and_reports_throttled_until() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .mount(&server)
        .await;
    let t = Instant::now();
    let err = client.drive().await.unwrap_err();
    assert!(matches!(err, GraphError::Throttled { until: Some(_) }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let until = client.throttled_until().expect("gate closed");
    let ahead = until - chrono::Utc::now();
    assert!(ahead > chrono::Duration::minutes(59) && ahead <= chrono::Duration::minutes(60));
    // Later requests do not even go out while the pause lasts.
    let err = client.item("A!1").await.unwrap_err();
    assert!(matches!(err, GraphError::Throttled { .. }));
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn session_status_and_cancel() {
    let (server, client) = setup().await;
    let url = format!("{}/up/s9?sig=x", server.uri());
    Mock::given(method("GET"))
        .and(path("/up/s9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "expirationDateTime": "2015-01-29T09:21:55.523Z", "nextExpectedRanges": ["12345-55232", "77829-99375"]
        })))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/up/s9"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let status = client.upload_status(&url).await.unwrap();
    assert_eq!(status.next_expected_offset(), Some(12345));
    client.cancel_upload(&url).await.unwrap();
    assert!(requests(&server).await.iter().all(|r| !has_auth(r)));
}

/// Captures log output of the current thread.
#[derive(Clone, Default)]
struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn retry_logs_name_the_request_but_never_secrets() {
    let capture = LogCapture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not thread-local: tracing caches per-callsite interest process-wide, so a thread-local subscriber
    // misses events whose callsites other tests hit first. Other tests' logs land here too, which only widens
    // the "no secrets" check (they use `SECRET` in pre-authenticated URLs as well).
    tracing::subscriber::set_global_default(subscriber).expect("only this test installs a subscriber");

    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/items/A!1"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/items/A!1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(item_json("A!1", "a.jpg")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/dl/SECRETPATH"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "0"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/dl/SECRETPATH"))
        .respond_with(
            ResponseTemplate::new(206)
                .insert_header("Content-Range", "bytes 0-4/100")
                .set_body_bytes(file_bytes()[0..5].to_vec()),
        )
        .mount(&server)
        .await;
    client.item("A!1").await.unwrap();
    let url = DownloadUrl::pre_authenticated(format!("{}/dl/SECRETPATH?sig=SECRETSIG", server.uri()));
    collect(client.get_range(&url, 0, 5).await.unwrap()).await.unwrap();

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("server error; retrying") && logs.contains("/v1.0/me/drive/items/A!1"),
        "{logs}"
    );
    assert!(
        logs.contains("throttled; pausing all requests") && logs.contains("status=503"),
        "{logs}"
    );
    assert!(
        !logs.contains("SECRET"),
        "pre-authenticated URL leaked into logs: {logs}"
    );
    assert!(!logs.contains(TOKEN), "token leaked into logs: {logs}");
}

#[test]
fn operations_are_send_for_spawning() {
    fn assert_send<T: Send>(_: T) {}
    let client = GraphClient::new(
        Endpoints::default(),
        Arc::new(StaticToken("t".into())),
        RetryPolicy::default(),
    )
    .unwrap();
    let src = Bytes::from_static(b"x");
    let job = new_child_job();
    let opts = UploadOptions::default();
    let mut cb = |_: UploadEvent<'_>| {};
    assert_send(client.upload_file(&src, &job, &opts, &mut cb));
    let item = DriveItem::default();
    let mut sink = Vec::new();
    assert_send(client.download_item(&item, &mut sink));
    assert_send(client.delta(DeltaStart::Latest { folder_id: None }));
    let url = DownloadUrl::pre_authenticated("https://example.invalid/x");
    assert_send(client.get_range(&url, 0, 1));
}

#[tokio::test]
async fn uploaded_item_with_a_different_hash_is_an_error() {
    let (server, client) = setup().await;
    mount_session(&server).await;
    Mock::given(method("PUT"))
        .and(path("/up/sess1"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": "N!1", "size": BIG_TOTAL,
            "file": {"hashes": {"quickXorHash": QuickXorHash::of(b"something else")}}})),
        )
        .mount(&server)
        .await;
    let opts = UploadOptions {
        fragment_size: 4 * FRAGMENT_ALIGN,
        ..small_opts()
    };
    let err = client
        .upload_file(&big_file(), &new_child_job(), &opts, &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::HashMismatch { .. }), "{err:?}");

    let unchecked = UploadOptions {
        verify_hash: false,
        ..opts
    };
    let item = client
        .upload_file(&big_file(), &new_child_job(), &unchecked, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(item.id, "N!1");
}

#[tokio::test]
async fn children_with_thumbnails_expands_them() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/items/F!1/children"))
        .and(query_param("$expand", "thumbnails($select=small)"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"id": "182331E8", "name": "my photo.jpg",
             "thumbnails": [{"id": "0", "small": {"width": 96, "height": 96, "url": "https://sn3302files..."}}]}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    let items = client.children_with_thumbnails("F!1", "small").await.unwrap();
    let sets = items[0].thumbnails.as_ref().unwrap();
    assert_eq!(sets[0].small.as_ref().unwrap().width, Some(96));
}

#[tokio::test]
async fn session_replace_checks_the_tag_before_starting() {
    let (server, client) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive/items/E!1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "E!1", "eTag": "\"{E!1},2\"", "cTag": "\"c:{E!1},2\""})),
        )
        .mount(&server)
        .await;
    let mut job = new_child_job();
    job.target = UploadTarget::Existing { item_id: "E!1".into() };
    job.if_match = Some("\"{E!1},1\"".into());
    let err = client
        .upload_file(&big_file(), &job, &small_opts(), &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::PreconditionFailed { .. }), "{err:?}");
    assert!(
        requests(&server).await.iter().all(|r| r.method.as_str() == "GET"),
        "no session was created for a stale tag"
    );
}
