//! Conformance of the Graph emulator's drive with the OneDrive v1.0 documentation, driven with plain reqwest
//! against an emulator started in-process. Each test names the documentation page it checks
//! (OAD = OneDrive/onedrive-api-docs `docs/rest-api/`, GDC = microsoft-graph-docs-contrib `api-reference/v1.0/`).

use crate::common;

use galleryfs::emulator::media::Content;
use galleryfs::emulator::{self, EmulatorConfig, EmulatorHandle};
use galleryfs::remote::QuickXorHash;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

struct Emu {
    h: EmulatorHandle,
    c: reqwest::Client,
    token: String,
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    fn inner_code(&self) -> &str {
        self.body["error"]["innerError"]["code"].as_str().unwrap_or("")
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

impl Emu {
    async fn start() -> Self {
        Self::with(EmulatorConfig::default()).await
    }

    async fn with(config: EmulatorConfig) -> Self {
        let h = emulator::start(config).await.expect("emulator starts");
        let token = h.test_token();
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        Emu { h, c, token }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.h.graph_url(), path)
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Reply {
        let mut r = self.c.request(method, self.url(path)).bearer_auth(&self.token);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        reply(r.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, &[]).await
    }

    async fn put_bytes(&self, path: &str, data: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
        let mut r = self.c.put(self.url(path)).bearer_auth(&self.token).body(data);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        reply(r.send().await.unwrap()).await
    }

    /// A request to the content host, without a bearer token (pre-authenticated URLs).
    async fn raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let mut r = self.c.request(method, url);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        let resp = r.send().await.unwrap();
        let (s, h) = (resp.status(), resp.headers().clone());
        (s, h, resp.bytes().await.unwrap().to_vec())
    }

    fn add(&self, path: &str, data: &[u8]) -> String {
        self.h
            .state
            .add_file(path, Content::Bytes(data.to_vec().into()))
            .unwrap()
    }
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, headers, body }
}

fn data(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(salt as u32 % 31) as u8 ^ salt)
        .collect()
}

fn assert_error_shape(r: &Reply) {
    let e = &r.body["error"];
    assert!(e["code"].is_string(), "error body: {}", r.body);
    assert!(e["message"].is_string());
    assert!(e["innerError"]["date"].is_string());
    assert!(e["innerError"]["request-id"].is_string());
}

// OAD concepts/errors.md (status codes, error resource) and api/drive_get.md: every request needs a token.
#[tokio::test]
async fn requests_need_a_bearer_token_and_errors_have_the_documented_shape() {
    let e = Emu::start().await;
    let r = e.c.get(e.url("/me/drive")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = e.get("/me/drive/items/NOPE!999").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "itemNotFound");
    assert_error_shape(&r);
    let r = e.get("/me/drive/root/permissions").await;
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED);
    assert_error_shape(&r);
}

// OAD api/drive_get.md, resources/drive.md, resources/quota.md; concepts/addressing-driveitems.md (ids).
#[tokio::test]
async fn drive_root_and_special_folder() {
    let e = Emu::start().await;
    let r = e.get("/me/drive").await;
    assert_eq!(r.status, 200);
    let id = r.body["id"].as_str().unwrap();
    assert_eq!(id.len(), 16);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(r.body["driveType"], "personal");
    for k in ["total", "used", "remaining", "deleted", "state"] {
        assert!(!r.body["quota"][k].is_null(), "quota.{k}");
    }
    assert_eq!(e.get(&format!("/drives/{}", id.to_uppercase())).await.status, 200);
    let root = e.get("/me/drive/root").await.body;
    assert_eq!(root["root"], json!({}));
    assert_eq!(root["id"].as_str().unwrap(), format!("{}!101", id.to_uppercase()));
    let pics = e.get("/me/drive/special/photos").await.body;
    assert_eq!(pics["name"], "Pictures");
    assert_eq!(pics["specialFolder"]["name"], "photos");
    assert_eq!(pics["parentReference"]["path"], "/drive/root:");
    assert_eq!(pics["parentReference"]["driveType"], "personal");
}

// OAD api/driveitem_list_children.md: default page 200, $top up to 1000, @odata.nextLink until the last page.
#[tokio::test]
async fn children_paging_boundaries() {
    let e = Emu::start().await;
    for n in [0usize, 1, 200, 201, 1000, 1001] {
        e.h.state.add_folder(&format!("/p{n}")).unwrap();
        for i in 0..n {
            e.add(&format!("/p{n}/f{i:05}.txt"), b"x");
        }
        for (top, page) in [(None, 200usize), (Some(1000), 1000), (Some(1), 1)] {
            if top == Some(1) && n > 201 {
                continue;
            }
            let mut url = format!("/me/drive/root:/p{n}:/children");
            if let Some(t) = top {
                url.push_str(&format!("?$top={t}"));
            }
            let mut seen = Vec::new();
            let mut pages = 0;
            loop {
                let r = e.get(&url).await;
                assert_eq!(r.status, 200, "{url}");
                let v = r.body["value"].as_array().unwrap();
                assert!(v.len() <= page);
                seen.extend(v.iter().map(|i| i["name"].as_str().unwrap().to_string()));
                pages += 1;
                match r.body["@odata.nextLink"].as_str() {
                    Some(next) => {
                        assert!(next.starts_with("http://") && next.contains("skiptoken"), "{next}");
                        assert_eq!(v.len(), page, "only the last page is short");
                        url = next.to_string();
                    }
                    None => break,
                }
            }
            assert_eq!(seen.len(), n, "n={n} top={top:?}");
            seen.dedup();
            assert_eq!(seen.len(), n, "no duplicates");
            assert_eq!(pages, n.div_ceil(page).max(1), "n={n} top={top:?}");
        }
    }
}

// OAD api/driveitem_list_children.md: If-None-Match with the folder's eTag or cTag → 304.
#[tokio::test]
async fn children_if_none_match() {
    let e = Emu::start().await;
    e.add("/a/x.txt", b"1");
    let folder = e.get("/me/drive/root:/a").await.body;
    let ctag = folder["cTag"].as_str().unwrap();
    let r = e
        .send(
            Method::GET,
            "/me/drive/root:/a:/children",
            None,
            &[("If-None-Match", ctag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    e.add("/a/y.txt", b"2");
    let r = e
        .send(
            Method::GET,
            "/me/drive/root:/a:/children",
            None,
            &[("If-None-Match", ctag)],
        )
        .await;
    assert_eq!(r.status, 200, "a new child changes the folder's cTag");
}

// OAD concepts/addressing-driveitems.md (path forms, percent-encoding) and concepts/case-sensitivity.md.
#[tokio::test]
async fn path_addressing_is_case_insensitive_and_percent_decoded() {
    let e = Emu::start().await;
    let id = e.add("/Pictures/Samsung Gallery/DCIM/Camera/IMG 1#a.jpg", b"jpeg");
    let r = e
        .get("/me/drive/root:/pictures/SAMSUNG%20gallery/dcim/camera/img%201%23A.JPG")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["name"], "IMG 1#a.jpg", "case preserved");
    assert_eq!(
        r.body["parentReference"]["path"],
        "/drive/root:/Pictures/Samsung Gallery/DCIM/Camera"
    );
    let gallery = e.get("/me/drive/special/photos:/Samsung Gallery:").await.body;
    let r = e
        .get(&format!(
            "/me/drive/items/{}:/DCIM/Camera:/children",
            gallery["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.body["value"][0]["id"], id.as_str());
    let drive_id = e.h.drive_id();
    let r = e.get(&format!("/drives/{drive_id}/items/{id}")).await;
    assert_eq!(r.status, 200);
    let r = e.get("/me/drive/special/photos:/Samsung Gallery/DCIM:/children").await;
    assert_eq!(r.body["value"][0]["name"], "Camera");
    assert_eq!(e.get("/me/drive/root:/Pictures/nope.jpg:").await.code(), "itemNotFound");
}

// OAD api/driveitem_get.md ($select, @microsoft.graph.downloadUrl) and concepts/optional-query-parameters.md.
#[tokio::test]
async fn select_limits_properties() {
    let e = Emu::start().await;
    let id = e.add("/s.txt", b"abc");
    let r = e.get(&format!("/me/drive/items/{id}?$select=id,name")).await;
    let keys: Vec<&String> = r.body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let r = e
        .get(&format!("/me/drive/items/{id}?select=id,@microsoft.graph.downloadUrl"))
        .await;
    assert!(r.body["@microsoft.graph.downloadUrl"]
        .as_str()
        .unwrap()
        .starts_with(&e.h.content_url()));
    assert!(r.body.get("name").is_none());
    let full = e.get(&format!("/me/drive/items/{id}")).await.body;
    assert_eq!(full["file"]["hashes"]["quickXorHash"], QuickXorHash::of(b"abc"));
    assert_eq!(full["size"], 3);
    assert_eq!(full["file"]["mimeType"], "text/plain");
    assert!(full["fileSystemInfo"]["lastModifiedDateTime"].is_string());
    assert!(full["@microsoft.graph.downloadUrl"].is_string());
}

// OAD resources/driveitem.md: eTag changes with any change, cTag with content only; a folder's cTag changes
// when a descendant changes, its eTag only with its own properties.
#[tokio::test]
async fn etag_and_ctag_follow_rename_and_edit() {
    let e = Emu::start().await;
    let id = e.add("/f/a.txt", b"one");
    let tags = |v: &Value| {
        (
            v["eTag"].as_str().unwrap().to_string(),
            v["cTag"].as_str().unwrap().to_string(),
        )
    };
    let (e0, c0) = tags(&e.get(&format!("/me/drive/items/{id}")).await.body);
    let (fe0, fc0) = tags(&e.get("/me/drive/root:/f").await.body);
    let r = e
        .send(
            Method::PATCH,
            &format!("/me/drive/items/{id}"),
            Some(json!({"name": "b.txt"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    let (e1, c1) = tags(&r.body);
    assert_ne!(e0, e1, "rename changes eTag");
    assert_eq!(c0, c1, "rename keeps cTag");
    let (fe1, fc1) = tags(&e.get("/me/drive/root:/f").await.body);
    assert_eq!(fe0, fe1, "folder eTag unchanged by a child's change");
    assert_ne!(fc0, fc1, "folder cTag changes with a descendant");
    let r = e
        .put_bytes(&format!("/me/drive/items/{id}/content"), b"two".to_vec(), &[])
        .await;
    assert_eq!(r.status, 200);
    let (e2, c2) = tags(&r.body);
    assert_ne!(e1, e2);
    assert_ne!(c1, c2, "edit changes cTag");
    assert_eq!(r.body["file"]["hashes"]["quickXorHash"], QuickXorHash::of(b"two"));
}

// OAD api/driveitem_get_content.md: 302 to a pre-authenticated URL; Range → 206; If-None-Match → 304.
#[tokio::test]
async fn download_redirect_and_ranges() {
    let e = Emu::start().await;
    let bytes = data(100_000, 3);
    let id = e.add("/d.bin", &bytes);
    let r = e.get(&format!("/me/drive/items/{id}/content")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let loc = r.header("location").to_string();
    assert!(loc.starts_with(&e.h.content_url()), "{loc}");
    let (s, h, b) = e.raw(Method::GET, &loc, &[], None).await;
    assert_eq!(s, 200);
    assert_eq!(b, bytes);
    assert_eq!(h["accept-ranges"], "bytes");
    let (s, h, b) = e.raw(Method::GET, &loc, &[("Range", "bytes=10-19")], None).await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-range"], "bytes 10-19/100000");
    assert_eq!(b, &bytes[10..20]);
    let (s, h, b) = e.raw(Method::GET, &loc, &[("Range", "bytes=-5")], None).await;
    assert_eq!(
        (s, h["content-range"].to_str().unwrap()),
        (StatusCode::PARTIAL_CONTENT, "bytes 99995-99999/100000")
    );
    assert_eq!(b, &bytes[99_995..]);
    let (s, _, b) = e.raw(Method::GET, &loc, &[("Range", "bytes=99990-")], None).await;
    assert_eq!((s, b.len()), (StatusCode::PARTIAL_CONTENT, 10));
    let (s, h, _) = e.raw(Method::GET, &loc, &[("Range", "bytes=100000-")], None).await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h["content-range"], "bytes */100000");
    // Bound to the version it was issued for.
    e.h.state
        .edit_file(&id, Content::Bytes(b"new".to_vec().into()))
        .unwrap();
    let (_, _, b) = e.raw(Method::GET, &loc, &[("Range", "bytes=0-2")], None).await;
    assert_eq!(b, &bytes[0..3]);
    let item = e.get(&format!("/me/drive/items/{id}")).await.body;
    let etag = item["eTag"].as_str().unwrap();
    let r = e
        .send(
            Method::GET,
            &format!("/me/drive/items/{id}/content"),
            None,
            &[("If-None-Match", etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
}

// OAD api/driveitem_get_content.md ("pre-authenticated … valid for a short period"): URLs expire.
#[tokio::test]
async fn download_urls_expire() {
    let e = Emu::start().await;
    let id = e.add("/x.bin", b"hello");
    let loc = e
        .get(&format!("/me/drive/items/{id}/content"))
        .await
        .header("location")
        .to_string();
    assert_eq!(e.raw(Method::GET, &loc, &[], None).await.0, 200);
    e.c.post(format!("{}/expire-download-urls", e.h.control_url()))
        .send()
        .await
        .unwrap();
    let (s, _, b) = e.raw(Method::GET, &loc, &[], None).await;
    assert!(s == 401 || s == 403, "{s}");
    let body: Value = serde_json::from_slice(&b).unwrap();
    assert!(body["error"]["code"].is_string());
    e.h.state.set_download_url_lifetime(Duration::from_millis(300));
    let loc = e
        .get(&format!("/me/drive/items/{id}/content"))
        .await
        .header("location")
        .to_string();
    assert_eq!(e.raw(Method::GET, &loc, &[], None).await.0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(e.raw(Method::GET, &loc, &[], None).await.0, 403);
}

// OAD api/driveitem_put_content.md: 201 new / 200 replace, conflictBehavior, If-Match / If-None-Match.
#[tokio::test]
async fn simple_upload_rules() {
    let e = Emu::start().await;
    let root = "/me/drive/root";
    let r = e
        .put_bytes(&format!("{root}:/up/a.jpg:/content"), b"1".to_vec(), &[])
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.body["id"].as_str().unwrap().to_string();
    let parent = r.body["parentReference"]["id"].as_str().unwrap().to_string();
    let r = e
        .put_bytes(
            &format!("/me/drive/items/{parent}:/A.JPG:/content"),
            b"22".to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "default conflictBehavior of PUT replaces");
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["name"], "a.jpg");
    let r = e
        .put_bytes(
            &format!("/me/drive/items/{parent}:/a.jpg:/content?@microsoft.graph.conflictBehavior=fail"),
            b"3".to_vec(),
            &[],
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "nameAlreadyExists"));
    let r = e
        .put_bytes(
            &format!("/me/drive/items/{parent}:/a.jpg:/content?@microsoft.graph.conflictBehavior=rename"),
            b"3".to_vec(),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.body["name"].as_str().unwrap()),
        (StatusCode::CREATED, "a 1.jpg")
    );
    let r = e
        .put_bytes(
            &format!("/me/drive/items/{id}/content"),
            b"4".to_vec(),
            &[("If-Match", "\"{nope},1\"")],
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PRECONDITION_FAILED, "resourceModified")
    );
    let etag = e.get(&format!("/me/drive/items/{id}")).await.body["eTag"]
        .as_str()
        .unwrap()
        .to_string();
    let r = e
        .put_bytes(
            &format!("/me/drive/items/{id}/content"),
            b"5".to_vec(),
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(r.status, 200);
    let r = e
        .put_bytes(
            &format!("{root}:/up/a.jpg:/content"),
            b"6".to_vec(),
            &[("If-None-Match", "*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = e
        .put_bytes(
            &format!("{root}:/up/b.jpg:/content"),
            b"6".to_vec(),
            &[("If-None-Match", "*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Strict mode: the 4 MiB limit of the older documentation.
    e.h.state.set_strict_simple_upload(true);
    let r = e
        .put_bytes(
            &format!("{root}:/up/big.bin:/content"),
            vec![0u8; 4 * 1024 * 1024 + 1],
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    e.h.state.set_strict_simple_upload(false);
    let big = data(5 * 1024 * 1024, 9);
    let r = e
        .put_bytes(&format!("{root}:/up/big.bin:/content"), big.clone(), &[])
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["file"]["hashes"]["quickXorHash"], QuickXorHash::of(&big));
}

async fn create_session(e: &Emu, path: &str, body: Value) -> Reply {
    e.send(
        Method::POST,
        &format!("/me/drive/root:/{path}:/createUploadSession"),
        Some(body),
        &[],
    )
    .await
}

async fn fragment(e: &Emu, url: &str, bytes: &[u8], start: usize, total: usize) -> (StatusCode, Value) {
    let end = start + bytes.len() - 1;
    let (s, _, b) = e
        .raw(
            Method::PUT,
            url,
            &[("Content-Range", &format!("bytes {start}-{end}/{total}"))],
            Some(bytes.to_vec()),
        )
        .await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

// GDC driveitem-createuploadsession.md: fragments, 320 KiB multiples, overlap → 416, status, cancel → 404.
#[tokio::test]
async fn upload_session_fragment_rules() {
    const K320: usize = 327_680;
    let e = Emu::start().await;
    let content = data(2 * K320 + 1000, 5);
    let total = content.len();
    let mtime = "2024-03-15T14:22:33Z";
    let r = create_session(
        &e,
        "sess/v.mp4",
        json!({"item": {"@microsoft.graph.conflictBehavior": "fail", "name": "v.mp4", "fileSize": total, "fileSystemInfo": {"lastModifiedDateTime": mtime}}}),
    )
    .await;
    assert_eq!(r.status, 200);
    let url = r.body["uploadUrl"].as_str().unwrap().to_string();
    assert!(url.starts_with(&e.h.content_url()));
    assert_eq!(r.body["nextExpectedRanges"], json!(["0-"]));
    assert!(r.body["expirationDateTime"].is_string());
    // Not a multiple of 320 KiB and not the last fragment.
    let (s, b) = fragment(&e, &url, &content[..1000], 0, total).await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "invalidRequest")
    );
    let (s, b) = fragment(&e, &url, &content[..K320], 0, total).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(b["nextExpectedRanges"], json!([format!("{K320}-")]));
    let (s, b) = fragment(&e, &url, &content[..K320], 0, total).await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (StatusCode::RANGE_NOT_SATISFIABLE, "invalidRange")
    );
    assert_eq!(b["error"]["innerError"]["code"], "fragmentOverlap");
    let (s, b) = fragment(&e, &url, &content[2 * K320..], 2 * K320, total).await;
    assert_eq!(
        (s, b["error"]["innerError"]["code"].as_str().unwrap()),
        (StatusCode::RANGE_NOT_SATISFIABLE, "fragmentOutOfOrder")
    );
    let (s, b) = fragment(&e, &url, &content[K320..2 * K320], K320, total + 1).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "total must match: {b}");
    // Resume: ask where it stands.
    let (s, _, b) = e.raw(Method::GET, &url, &[], None).await;
    assert_eq!(s, 200);
    let status: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(status["nextExpectedRanges"], json!([format!("{K320}-")]));
    let (s, _) = fragment(&e, &url, &content[K320..2 * K320], K320, total).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, item) = fragment(&e, &url, &content[2 * K320..], 2 * K320, total).await;
    assert_eq!(s, StatusCode::CREATED, "{item}");
    assert_eq!(item["size"], total);
    assert_eq!(item["file"]["hashes"]["quickXorHash"], QuickXorHash::of(&content));
    assert_eq!(
        item["fileSystemInfo"]["lastModifiedDateTime"],
        "2024-03-15T14:22:33.000Z"
    );
    let (s, _, _) = e.raw(Method::GET, &url, &[], None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a finished session is gone");
    // Default conflictBehavior of a session is fail.
    let r = create_session(&e, "sess/v.mp4", json!({"item": {"fileSize": 10}})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "nameAlreadyExists"));
    // Cancel.
    let r = create_session(&e, "sess/c.bin", json!({})).await;
    let url = r.body["uploadUrl"].as_str().unwrap().to_string();
    assert_eq!(e.raw(Method::DELETE, &url, &[], None).await.0, StatusCode::NO_CONTENT);
    let (s, _, b) = e.raw(Method::GET, &url, &[], None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let b: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(b["error"]["code"], "itemNotFound");
    let (s, _) = fragment(&e, &url, b"abc", 0, 3).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

// GDC driveitem-createuploadsession.md: a name taken while uploading with "fail" → 409 on the last fragment;
// a session by item id replaces the content (200); dropped sessions → 404.
#[tokio::test]
async fn upload_session_commit_conflicts_and_replace() {
    let e = Emu::start().await;
    let r = create_session(
        &e,
        "late/x.bin",
        json!({"item": {"@microsoft.graph.conflictBehavior": "fail"}}),
    )
    .await;
    let url = r.body["uploadUrl"].as_str().unwrap().to_string();
    e.add("/late/X.BIN", b"someone else");
    let (s, b) = fragment(&e, &url, b"mine", 0, 4).await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (StatusCode::CONFLICT, "upload_name_conflict")
    );
    // The session survives the failed commit; an explicit commit with a new name and the sourceUrl finishes it.
    let (s, _, b) = e.raw(Method::GET, &url, &[], None).await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&b).unwrap()["nextExpectedRanges"],
        json!([])
    );
    let r = e
        .send(
            Method::PUT,
            "/me/drive/root:/late/x.bin",
            Some(json!({"name": "x.bin", "@microsoft.graph.conflictBehavior": "rename", "@microsoft.graph.sourceUrl": url})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["name"], "x 1.bin");
    assert_eq!(r.body["size"], 4);
    assert_eq!(e.raw(Method::GET, &url, &[], None).await.0, StatusCode::NOT_FOUND);
    let id = e.add("/late/y.bin", b"old");
    let r = e
        .send(
            Method::POST,
            &format!("/me/drive/items/{id}/createUploadSession"),
            Some(json!({})),
            &[],
        )
        .await;
    let url = r.body["uploadUrl"].as_str().unwrap().to_string();
    let (s, item) = fragment(&e, &url, b"newer", 0, 5).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(item["id"], id.as_str());
    assert_eq!(item["size"], 5);
    let r = create_session(&e, "late/z.bin", json!({})).await;
    let url = r.body["uploadUrl"].as_str().unwrap().to_string();
    e.h.state.drop_upload_sessions();
    assert_eq!(fragment(&e, &url, b"z", 0, 1).await.0, StatusCode::NOT_FOUND);
}

// OAD api/driveitem_delete.md, GDC driveitem-restore.md, resources/quota.md (deleted = recycle bin).
#[tokio::test]
async fn delete_recycle_bin_and_restore() {
    let e = Emu::start().await;
    let id = e.add("/r/gone.bin", &[1u8; 1234]);
    let r = e
        .send(
            Method::DELETE,
            &format!("/me/drive/items/{id}"),
            None,
            &[("If-Match", "\"x\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = e
        .send(Method::DELETE, &format!("/me/drive/items/{id}"), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(e.get(&format!("/me/drive/items/{id}")).await.status, 404);
    assert_eq!(e.get("/me/drive").await.body["quota"]["deleted"], 1234);
    let bin: Value =
        e.c.get(format!("{}/recycle-bin", e.h.control_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(bin[0]["id"], id.as_str());
    assert_eq!(bin[0]["originalParentPath"], "/r");
    e.add("/r/gone.bin", b"other");
    let r = e
        .send(
            Method::POST,
            &format!("/me/drive/items/{id}/restore"),
            Some(json!({})),
            &[],
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "nameAlreadyExists"));
    let r = e
        .send(
            Method::POST,
            &format!("/me/drive/items/{id}/restore"),
            Some(json!({"name": "back.bin"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["name"], "back.bin");
    assert_eq!(r.body["parentReference"]["path"], "/drive/root:/r");
    assert_eq!(e.get("/me/drive").await.body["quota"]["deleted"], 0);
}

// OAD api/driveitem_update.md, api/driveitem_move.md; graph-api.md §12 naming rules.
#[tokio::test]
async fn patch_move_rename_and_naming_rules() {
    let e = Emu::start().await;
    let a = e.h.state.add_folder("/m/a").unwrap();
    let b = e.h.state.add_folder("/m/a/b").unwrap();
    let f = e.add("/m/f.txt", b"f");
    e.add("/m/g.txt", b"g");
    let e = &e;
    let patch = |id: &str, body: Value| {
        let url = format!("/me/drive/items/{id}");
        async move { e.send(Method::PATCH, &url, Some(body), &[]).await }
    };
    let r = patch(&a, json!({"parentReference": {"id": b}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "into its own subtree");
    let r = patch(&f, json!({"name": "G.TXT"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "nameAlreadyExists"),
        "case-only duplicate"
    );
    for bad in [
        "a:b",
        "con",
        "LPT1.txt",
        "trail.",
        " lead",
        "x|y",
        "desktop.ini",
        "~$lock",
        "q\"",
        "a_vti_b",
    ] {
        let r = patch(&f, json!({"name": bad})).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalidRequest"),
            "{bad}"
        );
        assert_eq!(r.inner_code(), "invalidPath", "{bad}");
        assert_error_shape(&r);
    }
    let r = patch(&f, json!({"name": "x".repeat(256)})).await;
    assert_eq!((r.status, r.inner_code()), (StatusCode::BAD_REQUEST, "pathIsTooLong"));
    let r = patch(&f, json!({"name": "F2.txt", "parentReference": {"id": b}, "fileSystemInfo": {"lastModifiedDateTime": "2020-01-02T03:04:05Z"}})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["parentReference"]["path"], "/drive/root:/m/a/b");
    assert_eq!(
        r.body["fileSystemInfo"]["lastModifiedDateTime"],
        "2020-01-02T03:04:05.000Z"
    );
    let etag = r.body["eTag"].as_str().unwrap().to_string();
    let r = e
        .send(
            Method::PATCH,
            &format!("/me/drive/items/{f}"),
            Some(json!({"name": "f3.txt"})),
            &[("If-Match", "\"stale\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = e
        .send(
            Method::PATCH,
            &format!("/me/drive/items/{f}"),
            Some(json!({"name": "f3.txt"})),
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(r.status, 200);
}

// OAD api/driveitem_post_children.md: create folder, conflictBehavior fail / rename / replace.
#[tokio::test]
async fn create_folder_conflicts() {
    let e = Emu::start().await;
    let mk = |name: &str, cb: &str| {
        e.send(
            Method::POST,
            "/me/drive/root/children",
            Some(json!({"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": cb})),
            &[],
        )
    };
    let r = mk("Album", "fail").await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["folder"]["childCount"], 0);
    let first = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(mk("album", "fail").await.status, StatusCode::CONFLICT);
    assert_eq!(mk("album", "rename").await.body["name"], "album 1");
    let r = mk("ALBUM", "replace").await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_ne!(r.body["id"], first.as_str());
    assert_eq!(mk("bad*name", "fail").await.status, StatusCode::BAD_REQUEST);
}

async fn delta_all(e: &Emu, start: &str) -> (Vec<Value>, String, usize) {
    let mut url = start.to_string();
    let mut items = Vec::new();
    let mut pages = 0;
    loop {
        let r = e.get(&url).await;
        assert_eq!(r.status, 200, "{url}: {}", r.body);
        pages += 1;
        items.extend(r.body["value"].as_array().unwrap().iter().cloned());
        if let Some(n) = r.body["@odata.nextLink"].as_str() {
            url = n.to_string();
            continue;
        }
        return (
            items,
            r.body["@odata.deltaLink"]
                .as_str()
                .expect("deltaLink on the last page")
                .to_string(),
            pages,
        );
    }
}

// OAD api/driveitem_delta.md: full enumeration, token=latest, incremental changes, deletes, paging, 410.
#[tokio::test]
async fn delta_full_latest_incremental_and_resync() {
    let e = Emu::start().await;
    for i in 0..250 {
        e.add(&format!("/Pictures/Samsung Gallery/DCIM/Camera/{i:04}.jpg"), &[i as u8]);
    }
    let other = e.add("/Documents/other.txt", b"o");
    let (items, link, pages) = delta_all(&e, "/me/drive/root/delta").await;
    assert!(pages >= 2, "pages of at most 200");
    assert!(items[0]["root"].is_object(), "the root comes first");
    let pos = |id: &str| items.iter().position(|i| i["id"] == id).unwrap();
    for it in &items {
        assert!(it["parentReference"].get("path").is_none(), "no path in delta");
        if let Some(p) = it["parentReference"]["id"].as_str() {
            assert!(pos(p) < pos(it["id"].as_str().unwrap()), "parents before children");
        }
        if it["folder"].is_object() {
            assert_eq!(it["folder"]["childCount"], 0);
        }
    }
    assert_eq!(items.len(), e.h.state.state_dump().len() + 1);
    let r = e.get("/me/drive/root/delta?token=latest").await;
    assert_eq!(r.body["value"], json!([]));
    let latest = r.body["@odata.deltaLink"].as_str().unwrap().to_string();
    assert!(e.get(&link).await.body["value"].as_array().unwrap().is_empty());
    // Changes: edit one, rename another, delete a third, add one.
    let cam = "/Pictures/Samsung Gallery/DCIM/Camera";
    e.h.state
        .edit_file(&format!("{cam}/0001.jpg"), Content::Bytes(b"edited".to_vec().into()))
        .unwrap();
    e.h.state
        .rename_item(&format!("{cam}/0002.jpg"), "renamed.jpg")
        .unwrap();
    let del = e.h.state.item_json(&format!("{cam}/0003.jpg")).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    e.h.state.delete_item(&del).unwrap();
    e.h.state
        .edit_file(
            &format!("{cam}/0001.jpg"),
            Content::Bytes(b"edited twice".to_vec().into()),
        )
        .unwrap();
    let (changes, next_link, _) = delta_all(&e, &latest).await;
    let names: Vec<&str> = changes.iter().filter_map(|c| c["name"].as_str()).collect();
    for want in [
        "root",
        "Pictures",
        "Samsung Gallery",
        "DCIM",
        "Camera",
        "0001.jpg",
        "renamed.jpg",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert_eq!(names.iter().filter(|n| **n == "0001.jpg").count(), 1, "each item once");
    let edited = changes.iter().find(|c| c["name"] == "0001.jpg").unwrap();
    assert_eq!(edited["size"], 12, "latest state");
    let d = changes.iter().find(|c| c["id"] == del.as_str()).unwrap();
    assert_eq!(d["deleted"], json!({}));
    assert!(d.get("cTag").is_none() && d.get("size").is_none());
    assert!(d["parentReference"]["id"].is_string());
    assert!(
        !changes.iter().any(|c| c["id"] == other.as_str()),
        "unchanged items stay out"
    );
    // Folder-scoped delta sees only its subtree.
    let gallery = e.h.state.item_json("/Pictures/Samsung Gallery").unwrap();
    let (scoped, _, _) = delta_all(
        &e,
        &format!("/me/drive/items/{}/delta", gallery["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(scoped[0]["id"], gallery["id"]);
    assert!(!scoped
        .iter()
        .any(|c| c["name"] == "Pictures" || c["id"] == other.as_str()));
    // Invalidated tokens: 410 resyncRequired with a Location that restarts enumeration.
    e.h.state.invalidate_delta_tokens();
    let r = e.get(&next_link).await;
    assert_eq!((r.status, r.code()), (StatusCode::GONE, "resyncRequired"));
    let restart = r.header("location").to_string();
    assert!(restart.starts_with("http"));
    let (again, _, _) = delta_all(&e, &restart).await;
    assert_eq!(again.len(), e.h.state.state_dump().len() + 1);
}

// OAD api/driveitem_delta.md ("410 Gone … resyncRequired"): a test control forgets one folder's delta state;
// that scope's tokens answer 410 until enumerated again, another scope's tokens keep working.
#[tokio::test]
async fn delta_tokens_of_one_scope_are_invalidated_alone() {
    let e = Emu::start().await;
    e.add("/Pictures/Samsung Gallery/a.jpg", b"a");
    e.add("/Pictures/Camera Roll/b.jpg", b"b");
    let gallery = e.h.state.item_json("/Pictures/Samsung Gallery").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let roll = e.h.state.item_json("/Pictures/Camera Roll").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, gallery_link, _) = delta_all(&e, &format!("/me/drive/items/{gallery}/delta")).await;
    let (_, roll_link, _) = delta_all(&e, &format!("/me/drive/items/{roll}/delta")).await;
    e.h.state.invalidate_delta_tokens_of(&roll).unwrap();
    let r = e.get(&roll_link).await;
    assert_eq!((r.status, r.code()), (StatusCode::GONE, "resyncRequired"));
    let (again, fresh_link, _) = delta_all(&e, r.header("location")).await;
    assert!(again.iter().any(|c| c["name"] == "b.jpg"), "{again:?}");
    let (none, _, _) = delta_all(&e, &fresh_link).await;
    assert!(none.is_empty(), "a token issued after the control works: {none:?}");
    let (unchanged, _, _) = delta_all(&e, &gallery_link).await;
    assert!(
        unchanged.is_empty(),
        "the other scope's token still works: {unchanged:?}"
    );
}

// OAD api/driveitem_delta.md: $top sets the page size; the last page carries the deltaLink.
#[tokio::test]
async fn delta_top_pages() {
    let e = Emu::start().await;
    for i in 0..9 {
        e.add(&format!("/t/{i}.txt"), b"x");
    }
    let (items, _, pages) = delta_all(&e, "/me/drive/root/delta?$top=3").await;
    // root, Pictures, t, 9 files = 12 items in pages of 3.
    assert_eq!(items.len(), 12);
    assert_eq!(pages, 4);
}

// OAD api/driveitem_list_thumbnails.md: no thumbnails → {"value": []}; sizes, custom sizes, /content → 302.
#[tokio::test]
async fn thumbnails() {
    let e = Emu::start().await;
    let txt = e.add("/n.txt", b"not media");
    let r = e.get(&format!("/me/drive/items/{txt}/thumbnails")).await;
    assert_eq!((r.status, r.body["value"].clone()), (StatusCode::OK, json!([])));
    let Some(bytes) = common::sample("samsung_sm-g935l.jpg") else {
        return;
    };
    let id = e.add("/Pictures/t.jpg", &bytes);
    let content = Content::Bytes(bytes.clone().into());
    assert!(
        galleryfs::emulator::media::render_thumbnail(&content, "image/jpeg", 176, 176, false).is_some(),
        "the emulator renders a thumbnail of a real photo"
    );
    let r = e.get(&format!("/me/drive/items/{id}/thumbnails")).await;
    let set = &r.body["value"][0];
    assert_eq!(set["id"], "0");
    for (size, edge) in [("small", 96), ("medium", 176), ("large", 800)] {
        let (w, h) = (
            set[size]["width"].as_u64().unwrap(),
            set[size]["height"].as_u64().unwrap(),
        );
        assert!(w.max(h) <= edge && w.max(h) >= edge / 2, "{size}: {w}x{h}");
        let (s, hd, b) = e.raw(Method::GET, set[size]["url"].as_str().unwrap(), &[], None).await;
        assert_eq!(
            (s, hd["content-type"].to_str().unwrap()),
            (StatusCode::OK, "image/jpeg")
        );
        assert_eq!(&b[..2], &[0xFF, 0xD8], "a JPEG");
    }
    let r = e
        .get(&format!("/me/drive/items/{id}/thumbnails?select=c256x256_Crop"))
        .await;
    assert_eq!(r.body["value"][0]["c256x256_Crop"]["width"], 256);
    let r = e.get(&format!("/me/drive/items/{id}/thumbnails/0/medium")).await;
    assert_eq!(r.body["url"], set["medium"]["url"]);
    let r = e
        .get(&format!("/me/drive/items/{id}/thumbnails/0/medium/content"))
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.header("location"), set["medium"]["url"].as_str().unwrap());
    let r = e.get("/me/drive/root:/Pictures:/children?$expand=thumbnails").await;
    assert_eq!(
        r.body["value"][0]["thumbnails"][0]["medium"]["url"],
        set["medium"]["url"]
    );
    e.h.state.set_thumbnails_missing(&id, true).unwrap();
    assert_eq!(
        e.get(&format!("/me/drive/items/{id}/thumbnails")).await.body["value"],
        json!([])
    );
}

// OAD api/driveitem_list_thumbnails.md "Getting thumbnails while listing DriveItems" (`$expand=thumbnails` on
// children) with custom sizes ("Requesting custom thumbnail sizes": fit inside the box, aspect kept) chosen by the
// expansion's `$select`; graph-api.md §4: with `$expand` a page holds at most 100 items, and the nextLink keeps it.
#[tokio::test]
async fn children_expand_thumbnails_with_custom_sizes_on_every_page() {
    let e = Emu::start().await;
    for i in 0..150u64 {
        e.h.state
            .add_file(
                &format!("/Pictures/Album/IMG_{i:04}.jpg"),
                Content::Synthetic { seed: i, len: 2_000 },
            )
            .unwrap();
    }
    e.add("/Pictures/Album/notes.txt", b"not media");
    let gone =
        e.h.state
            .add_file(
                "/Pictures/Album/VID_new.mp4",
                Content::Synthetic { seed: 9, len: 3_000 },
            )
            .unwrap();
    e.h.state.set_thumbnails_missing(&gone, true).unwrap();

    let mut next = Some(
        "/me/drive/root:/Pictures/Album:/children?$top=1000&$select=id,name,cTag\
         &$expand=thumbnails($select=c128x128,c256x256)"
            .to_string(),
    );
    let (mut items, mut pages) = (Vec::new(), 0);
    while let Some(url) = next.take() {
        let r = e.get(&url).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let page = r.body["value"].as_array().unwrap().clone();
        assert!(
            page.len() <= 100,
            "at most 100 items per page with $expand: {}",
            page.len()
        );
        items.extend(page);
        pages += 1;
        next = r.body["@odata.nextLink"].as_str().map(str::to_string);
    }
    assert_eq!((items.len(), pages), (152, 2));
    for item in &items {
        let name = item["name"].as_str().unwrap();
        assert!(item.get("size").is_none(), "$select still limits the properties");
        let sets = item["thumbnails"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: thumbnails expanded"));
        if name == "notes.txt" || name == "VID_new.mp4" {
            assert!(sets.is_empty(), "{name}: no thumbnail is an empty list");
            continue;
        }
        let set = &sets[0];
        assert_eq!(set["id"], "0");
        let mut keys: Vec<&str> = set.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["c128x128", "c256x256", "id"], "{name}: only the sizes selected");
        for (key, edge) in [("c128x128", 128u64), ("c256x256", 256)] {
            let (w, h) = (
                set[key]["width"].as_u64().unwrap(),
                set[key]["height"].as_u64().unwrap(),
            );
            assert_eq!(w.max(h), edge, "{name} {key}: fits the box ({w}x{h})");
        }
    }
    // The listed URL serves the JPEG of that size, without a bearer token.
    let url = items[0]["thumbnails"][0]["c256x256"]["url"].as_str().unwrap();
    let (status, _, body) = e.raw(Method::GET, url, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let img = image::load_from_memory(&body).unwrap();
    assert_eq!(
        (u64::from(img.width()), u64::from(img.height())),
        (
            items[0]["thumbnails"][0]["c256x256"]["width"].as_u64().unwrap(),
            items[0]["thumbnails"][0]["c256x256"]["height"].as_u64().unwrap()
        )
    );
}

// OAD resources/quota.md (states) and api/driveitem_put_content.md / createUploadSession (507 over quota).
#[tokio::test]
async fn quota_states_and_507() {
    let e = Emu::start().await;
    e.c.post(format!("{}/quota", e.h.control_url()))
        .json(&json!({"total": 1_000_000, "used": 950_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(e.get("/me/drive").await.body["quota"]["state"], "nearing");
    let r = e
        .put_bytes("/me/drive/root:/q.bin:/content", vec![0u8; 60_000], &[])
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::INSUFFICIENT_STORAGE, "quotaLimitReached")
    );
    let r = create_session(&e, "q2.bin", json!({"item": {"fileSize": 60_000}})).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
    e.h.state.set_quota(None, Some(1_000_001));
    let q = e.get("/me/drive").await.body["quota"].clone();
    assert_eq!(q["state"], "exceeded");
    assert!(q["remaining"].as_i64().unwrap() < 0);
    let r = e
        .send(
            Method::POST,
            "/me/drive/root/children",
            Some(json!({"name": "n", "folder": {}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
}

// The state dump and the --state file survive a restart (ids, tags, content).
#[tokio::test]
async fn state_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let config = EmulatorConfig {
        state_file: Some(file.clone()),
        ..Default::default()
    };
    let e = Emu::with(config.clone()).await;
    let big = data(600_000, 1);
    e.add("/keep/small.txt", b"small");
    e.add("/keep/big.bin", &big);
    let gone = e.add("/keep/gone.txt", b"bye");
    e.h.state.delete_item(&gone).unwrap();
    let before = e.h.state.state_dump();
    let drive_id = e.h.drive_id();
    let old_token = e.token.clone();
    e.h.shutdown().await.unwrap();
    let mut e = Emu::with(config).await;
    // The identity part of the state file: a token issued before the restart is still accepted.
    e.token = old_token;
    assert_eq!(e.get("/me/drive").await.status, 200);
    e.token = "not-a-token".into();
    assert_eq!(e.get("/me/drive").await.status, StatusCode::UNAUTHORIZED);
    e.token = e.h.test_token();
    assert_eq!(e.h.drive_id(), drive_id);
    assert_eq!(e.h.state.state_dump(), before);
    assert_eq!(e.h.state.recycle_bin_dump()[0].id, gone);
    let loc = e
        .get("/me/drive/root:/keep/big.bin:/content")
        .await
        .header("location")
        .to_string();
    assert_eq!(e.raw(Method::GET, &loc, &[], None).await.2, big);
}

// A --state file records full-size camera photos by how they are made, not by their megabytes, and serves
// the same bytes after a restart.
#[tokio::test]
async fn state_file_keeps_full_size_photos_small() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let config = EmulatorConfig {
        state_file: Some(file.clone()),
        seed_gallery: 12,
        seed_camera_roll: 2,
        ..Default::default()
    };
    let gallery = galleryfs::emulator::media::samsung_gallery(12, emulator::state::GALLERY_SEED);
    let photo = gallery
        .iter()
        .find(|f| f.path.starts_with("DCIM/Camera/") && f.path.ends_with(".jpg"))
        .expect("a camera photo");
    let expected = photo.content.read_range(0, photo.content.len());
    assert!(expected.len() > 1 << 20, "full size: {} bytes", expected.len());
    let e = Emu::with(config.clone()).await;
    // Seeded photos are hashed in the background; the dump compared after the restart is the settled one.
    assert!(e.h.wait_for_hashes(Duration::from_secs(60)).await, "seed hashes");
    let before = e.h.state.state_dump();
    e.h.shutdown().await.unwrap();
    let saved = std::fs::metadata(&file).unwrap().len();
    assert!(saved < 512 << 10, "the state file holds {saved} bytes");
    // Beside it only stored content over 256 KiB (the seed's AVI clip), no copy of a photo.
    let blobs: u64 = std::fs::read_dir(dir.path().join("state.json.blobs"))
        .map(|d| d.map(|e| e.unwrap().metadata().unwrap().len()).sum())
        .unwrap_or(0);
    assert!(blobs < 1 << 20, "{blobs} bytes beside the state file");
    let e = Emu::with(config).await;
    assert_eq!(e.h.state.state_dump(), before);
    let path = format!("Pictures/Samsung Gallery/{}", photo.path).replace(' ', "%20");
    let loc = e
        .get(&format!("/me/drive/root:/{path}:/content"))
        .await
        .header("location")
        .to_string();
    assert_eq!(e.raw(Method::GET, &loc, &[], None).await.2, expected.to_vec());
}

// The seed gallery lands in Pictures/Samsung Gallery whatever media::samsung_gallery returns.
#[tokio::test]
async fn seed_gallery_is_placed_under_pictures() {
    let n = galleryfs::emulator::media::samsung_gallery(5, emulator::state::GALLERY_SEED).len();
    let e = Emu::with(EmulatorConfig {
        seed_gallery: 5,
        ..Default::default()
    })
    .await;
    let files: Vec<_> =
        e.h.state
            .state_dump()
            .into_iter()
            .filter(|s| s.kind == "file")
            .collect();
    assert_eq!(files.len(), n);
    assert_eq!(n, 5, "media::samsung_gallery makes the files asked for");
    assert!(files.iter().all(|f| f.path.starts_with("/Pictures/Samsung Gallery/")));
}

// README.md, "The emulator": `galleryfs emulator` prints one JSON line with its URLs, then serves until SIGTERM.
#[tokio::test]
async fn cli_prints_ready_line() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_galleryfs"))
        .args(["emulator", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    for k in ["graph", "login", "content", "control", "drive_id"] {
        assert!(v[k].is_string(), "{k} in {line}");
    }
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let tok: Value = c
        .get(format!("{}/token", v["control"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = c
        .get(format!("{}/me/drive", v["graph"].as_str().unwrap()))
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let drive: Value = r.json().await.unwrap();
    assert_eq!(drive["id"], v["drive_id"]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

// OAD api/driveitem_delta.md: the examples' function form `delta(token='…')` works like `?token=`.
#[tokio::test]
async fn delta_function_form_token() {
    let e = Emu::start().await;
    let latest = e.get("/me/drive/root/delta?token=latest").await.body["@odata.deltaLink"]
        .as_str()
        .unwrap()
        .to_string();
    let token = latest.split("token=").nth(1).unwrap().to_string();
    let id = e.add("/fn.txt", b"x");
    let r = e.get(&format!("/me/drive/root/delta(token='{token}')")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ids: Vec<&str> = r.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    assert!(ids.contains(&id.as_str()), "{ids:?}");
    assert!(r.body["@odata.deltaLink"].is_string());
}

// Large generated content is hashed in the background; the hash appears and matches the bytes served.
#[tokio::test]
async fn background_hashes_appear() {
    let e = Emu::start().await;
    let len = 5 * 1024 * 1024;
    let id =
        e.h.state
            .add_file("/big/gen.bin", Content::Synthetic { seed: 42, len })
            .unwrap();
    assert!(e.h.wait_for_hashes(Duration::from_secs(60)).await);
    let item = e.get(&format!("/me/drive/items/{id}")).await.body;
    let expected = QuickXorHash::of(&Content::Synthetic { seed: 42, len }.read_range(0, len));
    assert_eq!(item["file"]["hashes"]["quickXorHash"], expected.as_str());
}

// OAD resources/image.md, resources/photo.md: an uploaded photo gets image and photo facets from its content; as on
// OneDrive, the photo facet (EXIF) arrives a few seconds after the upload, with one more change of the item.
#[tokio::test]
async fn uploaded_photo_gets_image_and_photo_facets() {
    let Some(bytes) = common::sample("samsung_gt-i9505.jpg") else {
        return;
    };
    let e = Emu::start().await;
    let r = e
        .put_bytes("/me/drive/root:/Pictures/s4.jpg:/content", bytes, &[])
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.body["image"]["width"].as_u64().unwrap() > 1000);
    assert!(r.body["image"]["height"].as_u64().unwrap() > 1000);
    assert!(r.body.get("photo").is_none(), "the photo facet comes later: {}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let etag = r.body["eTag"].clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = e.get(&format!("/me/drive/items/{id}")).await;
        if r.body.get("photo").is_some() || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(r.body["eTag"], etag, "the facet's arrival is a change of the item");
    assert!(r.body["photo"]["cameraMake"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("samsung"));
    assert!(r.body["photo"]["takenDateTime"].as_str().unwrap().starts_with("20"));
}

// OAD api/driveitem_copy.md and concepts/long-running-actions.md: 202 + monitor URL; the job reports the copy.
#[tokio::test]
async fn copy_with_monitor() {
    let e = Emu::start().await;
    let src = e.h.state.add_folder("/src").unwrap();
    e.add("/src/a.txt", b"aaa");
    e.add("/src/sub/b.txt", b"bb");
    let dst = e.h.state.add_folder("/dst").unwrap();
    let r = e
        .send(
            Method::POST,
            &format!("/me/drive/items/{src}/copy"),
            Some(json!({"parentReference": {"id": dst}, "name": "copied"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let monitor = r.header("location").to_string();
    let (s, _, b) = e.raw(Method::GET, &monitor, &[], None).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let status: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(status["status"], "completed");
    let copy = e
        .get(&format!("/me/drive/items/{}", status["resourceId"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(copy["name"], "copied");
    assert_ne!(copy["id"], src.as_str());
    let b = e.get("/me/drive/root:/dst/copied/sub/b.txt").await.body;
    assert_eq!(b["file"]["hashes"]["quickXorHash"], QuickXorHash::of(b"bb"));
    assert_eq!(
        e.get("/me/drive/root:/src/sub/b.txt").await.status,
        200,
        "the source stays"
    );
    let r = e
        .send(
            Method::POST,
            &format!("/me/drive/items/{src}/copy"),
            Some(json!({"parentReference": {"id": dst}, "name": "COPIED"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

// The test controls over HTTP (plain bodies without a Content-Type, as `curl -d` sends them).
#[tokio::test]
async fn controls_over_http() {
    let e = Emu::start().await;
    let ctl = |path: &str, body: &str| {
        e.c.post(format!("{}/{path}", e.h.control_url()))
            .body(body.to_string())
            .send()
    };
    let r = ctl(
        "files",
        r#"{"path": "/Pictures/Samsung Gallery/DCIM/Camera/a.jpg", "text": "x"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let r = ctl(
        "files",
        r#"{"path": "/Pictures/Samsung Gallery/DCIM/Video/v.mp4", "size": 1000, "seed": 7}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        ctl("rename", &format!(r#"{{"item": "{id}", "name": "b.jpg"}}"#))
            .await
            .unwrap()
            .status(),
        200
    );
    let r = ctl(
        "move",
        r#"{"item": "/Pictures/Samsung Gallery/DCIM/Camera/b.jpg", "parent": "/Pictures"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = ctl("rename", r#"{"item": "/nope", "name": "x"}"#).await.unwrap();
    assert_eq!(r.status(), 404);
    let state: Vec<Value> =
        e.c.get(format!("{}/state", e.h.control_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let b = state
        .iter()
        .find(|s| s["path"] == "/Pictures/b.jpg")
        .expect("moved file in the dump");
    for k in ["id", "size", "quickXorHash", "eTag", "cTag", "kind"] {
        assert!(!b[k].is_null(), "{k}");
    }
    assert_eq!(ctl("delete-gallery", "").await.unwrap().status(), 200);
    assert_eq!(e.get("/me/drive/root:/Pictures/Samsung Gallery").await.status, 404);
    let bin: Vec<Value> =
        e.c.get(format!("{}/recycle-bin", e.h.control_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(bin[0]["name"], "Samsung Gallery");
    let gallery = bin[0]["id"].as_str().unwrap();
    assert_eq!(
        ctl("restore", &format!(r#"{{"item": "{gallery}"}}"#))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        e.get("/me/drive/root:/Pictures/Samsung Gallery/DCIM/Video/v.mp4")
            .await
            .body["size"],
        1000
    );
}

// OAD api/driveitem_delta.md (folder scope, Personal): a move out of the scoped folder reads as a delete there,
// a move into it as a new item; deletes of a folder's subtree all arrive.
#[tokio::test]
async fn folder_scoped_delta_moves_and_subtree_deletes() {
    let e = Emu::start().await;
    let g = e.h.state.add_folder("/Pictures/Samsung Gallery").unwrap();
    let inside = e.add("/Pictures/Samsung Gallery/DCIM/Camera/in.jpg", b"1");
    let outside = e.add("/Documents/out.jpg", b"2");
    let sub = e.add("/Pictures/Samsung Gallery/Album/x.jpg", b"3");
    let start = e.get(&format!("/me/drive/items/{g}/delta?token=latest")).await.body["@odata.deltaLink"]
        .as_str()
        .unwrap()
        .to_string();
    e.h.state.move_item(&inside, "/Documents", None).unwrap();
    e.h.state
        .move_item(&outside, "/Pictures/Samsung Gallery", None)
        .unwrap();
    e.h.state.delete_item("/Pictures/Samsung Gallery/Album").unwrap();
    let (changes, _, _) = delta_all(&e, &start).await;
    let find = |id: &str| changes.iter().find(|c| c["id"] == id).cloned().unwrap_or(Value::Null);
    assert_eq!(find(&inside)["deleted"], json!({}), "moved out: deleted here");
    assert!(
        find(&outside)["deleted"].is_null() && find(&outside)["file"].is_object(),
        "moved in: present"
    );
    assert_eq!(
        find(&sub)["deleted"],
        json!({}),
        "a deleted folder's files arrive as deleted"
    );
    assert!(
        changes.iter().all(|c| c["name"] != "Documents"),
        "nothing outside the scope"
    );
}

// graph-api.md §2 (OneDrive/onedrive-api-docs#800): with post-processing on, a fresh upload has no thumbnails
// yet and its eTag changes once more shortly after, so If-Match with the upload's eTag then fails.
#[tokio::test]
async fn post_processing_changes_etag_after_upload() {
    let e = Emu::start().await;
    e.h.state.set_post_processing(Some(Duration::from_millis(200)));
    let r = e.put_bytes("/me/drive/root:/pp.txt:/content", b"x".to_vec(), &[]).await;
    let (id, etag, ctag) = (
        r.body["id"].as_str().unwrap().to_string(),
        r.body["eTag"].as_str().unwrap().to_string(),
        r.body["cTag"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        e.get(&format!("/me/drive/items/{id}/thumbnails")).await.body["value"],
        json!([])
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let now = e.get(&format!("/me/drive/items/{id}")).await.body;
    assert_ne!(now["eTag"], etag.as_str());
    assert_eq!(now["cTag"], ctag.as_str());
    let r = e
        .send(
            Method::PATCH,
            &format!("/me/drive/items/{id}"),
            Some(json!({"name": "pp2.txt"})),
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
}

// OAD api/drive_get_specialfolder.md: `cameraroll` is "The Camera Roll Backup folder"; special folders are found by
// what they are, not by their (localized) name, and are created the first time an app writes to one. Camera Backup
// (peers.md §6): Android names `yyyyMMdd_HHmmss.jpg` in the folder, iOS `yyyyMMdd_HHmmssSSS_iOS.heic` in `YYYY/MM`,
// with `photo.takenDateTime`.
#[tokio::test]
async fn the_camera_roll_is_a_special_folder_made_on_first_write() {
    let e = Emu::with(EmulatorConfig {
        camera_roll_name: Some("Rullino".into()),
        ..Default::default()
    })
    .await;
    let missing = e.get("/me/drive/special/cameraroll").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    assert_error_shape(&missing);
    assert_eq!(missing.code(), "itemNotFound");
    // Reading did not make it.
    assert_eq!(
        e.get("/me/drive/special/cameraroll").await.status,
        StatusCode::NOT_FOUND
    );

    let up = e
        .put_bytes("/me/drive/special/cameraroll:/first.jpg:/content", b"x".to_vec(), &[])
        .await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.body);
    let roll = e.get("/me/drive/special/cameraroll").await.body;
    assert_eq!(roll["name"], "Rullino", "the configured (localized) name");
    assert_eq!(roll["specialFolder"]["name"], "cameraroll");
    let pictures = e.get("/me/drive/special/photos").await.body;
    assert_eq!(roll["parentReference"]["id"], pictures["id"], "in the photos folder");
    assert_eq!(up.body["parentReference"]["id"], roll["id"]);

    // Renamed by the user: still special/cameraroll.
    let id = roll["id"].as_str().unwrap().to_string();
    let renamed = e
        .send(
            Method::PATCH,
            &format!("/me/drive/items/{id}"),
            Some(json!({"name": "Fotocamera"})),
            &[],
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    let again = e.get("/me/drive/special/cameraroll").await.body;
    assert_eq!(
        (again["id"].as_str(), again["name"].as_str()),
        (Some(id.as_str()), Some("Fotocamera"))
    );

    // Camera Backup uploads, through the HTTP control.
    let taken = "2026-10-03T08:15:42.250Z";
    let android: Value =
        e.c.post(format!("{}/camera-backup", e.h.control_url()))
            .json(&json!({"platform": "android", "taken": taken}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(android["path"], "/Pictures/Fotocamera/20261003_081542.jpg", "{android}");
    let ios =
        e.h.state
            .camera_backup(
                emulator::camera_backup::Platform::Ios,
                chrono::DateTime::parse_from_rfc3339(taken)
                    .unwrap()
                    .with_timezone(&chrono::Utc),
                "heic",
                None,
            )
            .unwrap();
    assert_eq!(ios.1, "/Pictures/Fotocamera/2026/10/20261003_081542250_iOS.heic");
    for id in [android["id"].as_str().unwrap(), ios.0.as_str()] {
        let item = e.get(&format!("/me/drive/items/{id}")).await.body;
        assert_eq!(item["photo"]["takenDateTime"], taken, "{item}");
        assert!(item["image"]["width"].as_u64().unwrap() > 0, "{item}");
        assert_eq!(
            item["fileSystemInfo"]["createdDateTime"].as_str().map(|s| &s[..19]),
            Some("2026-10-03T08:15:42")
        );
    }
}
