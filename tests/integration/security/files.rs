//! The storage tools' files are per caller: a restricted key (or a user Open WebUI names) has a
//! folder of its own, and cannot list, read, replace or delete another's files, nor retype its
//! own by writing the store's sidecar files; each folder is held to a quota.

use serde_json::{Value, json};

use crate::common::{TestApp, first_text};

const YAML: &str = "builtin_tools:\n  enabled: true\n  files_quota_count: 3\n  files_quota_bytes: 1000\n\
auth:\n  api_keys: [sk-files-admin-0123]\n  trust_user_headers: true\n  keys:\n\
\x20   - key: sk-files-a-0123\n      tools: [\"builtin__minio_*\", builtin__read_artifact]\n\
\x20   - key: sk-files-b-0123\n      tools: [\"builtin__minio_*\", builtin__read_artifact]\n";

async fn call(app: &TestApp, key: &str, user: Option<&str>, tool: &str, args: Value) -> (u16, Value) {
    let mut req = app.client.post(app.url("/mcp/tools/call")).bearer_auth(key);
    if let Some(user) = user {
        req = req.header("x-openwebui-user-id", user);
    }
    let resp = req.json(&json!({"name": tool, "arguments": args})).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn each_caller_keeps_its_own_files() {
    let mut app = TestApp::spawn(YAML).await;
    app.key = Some("sk-files-admin-0123".into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "builtin__minio_upload_object")).await;
    let (a, b) = ("sk-files-a-0123", "sk-files-b-0123");
    for (key, text) in [(a, "alpha"), (b, "beta")] {
        let (status, body) =
            call(&app, key, None, "builtin__minio_upload_object", json!({"key": "notes.txt", "text": text})).await;
        assert_eq!(status, 200, "{body}");
    }
    // Each key reads and lists only its own.
    for (key, text) in [(a, "alpha"), (b, "beta")] {
        let (_, body) = call(&app, key, None, "builtin__minio_download_object", json!({"key": "notes.txt"})).await;
        assert_eq!(first_text(&body), text);
        let (_, listed) = call(&app, key, None, "builtin__minio_list_objects", json!({})).await;
        assert_eq!(
            listed["structuredContent"]["objects"],
            json!([{"key": "notes.txt", "size": text.len()}]),
            "{listed}"
        );
    }
    // B deletes "notes.txt": its own; A's is still there.
    call(&app, b, None, "builtin__minio_delete_object", json!({"key": "notes.txt"})).await;
    let (_, body) = call(&app, a, None, "builtin__minio_download_object", json!({"key": "notes.txt"})).await;
    assert_eq!(first_text(&body), "alpha");
    // No way out of the folder, and no sidecar files.
    for key in ["../notes.txt", "../../files/notes.txt", "notes.txt.meta.json", "x.tmp-1"] {
        let (status, body) =
            call(&app, b, None, "builtin__minio_upload_object", json!({"key": key, "text": "x"})).await;
        assert_ne!(status, 200, "{key}: {body}");
    }
    // The admin key sees every folder; A's file is under a folder named for A, not its key.
    let (_, listed) = call(&app, "sk-files-admin-0123", None, "builtin__minio_list_objects", json!({})).await;
    let keys: Vec<&str> =
        listed["structuredContent"]["objects"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("k-") && keys[0].ends_with("/notes.txt") && !keys[0].contains("sk-files"), "{keys:?}");
    // B cannot read A's file through read_artifact with its full key either.
    let (status, _) = call(&app, b, None, "builtin__read_artifact", json!({"key": format!("files/{}", keys[0])})).await;
    assert_ne!(status, 200);

    // Users Open WebUI names get folders of their own, even behind one key.
    let admin = "sk-files-admin-0123";
    call(&app, admin, Some("alice"), "builtin__minio_upload_object", json!({"key": "a.txt", "text": "from alice"}))
        .await;
    let (status, body) =
        call(&app, admin, Some("bob"), "builtin__minio_download_object", json!({"key": "a.txt"})).await;
    assert_eq!((status, body["isError"].as_bool()), (200, Some(true)), "bob read alice's file: {body}");
    assert_eq!(first_text(&body), "no stored object `a.txt`");
    let (_, body) = call(&app, admin, Some("alice"), "builtin__minio_download_object", json!({"key": "a.txt"})).await;
    assert_eq!(first_text(&body), "from alice");
}

#[tokio::test]
async fn each_folder_has_a_quota() {
    let mut app = TestApp::spawn(YAML).await;
    app.key = Some("sk-files-admin-0123".into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "builtin__minio_upload_object")).await;
    let a = "sk-files-a-0123";
    for i in 0..3 {
        let (status, body) =
            call(&app, a, None, "builtin__minio_upload_object", json!({"key": format!("{i}.txt"), "text": "x"})).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) =
        call(&app, a, None, "builtin__minio_upload_object", json!({"key": "3.txt", "text": "x"})).await;
    assert_ne!(status, 200);
    assert!(body.to_string().contains("quota"), "{body}");
    // Replacing a file is fine; growing past the byte quota is not.
    let (status, _) = call(&app, a, None, "builtin__minio_upload_object", json!({"key": "0.txt", "text": "y"})).await;
    assert_eq!(status, 200);
    let big = "z".repeat(1000);
    let (status, body) =
        call(&app, a, None, "builtin__minio_upload_object", json!({"key": "1.txt", "text": big})).await;
    assert_ne!(status, 200, "{body}");
    // Another key's folder is not affected.
    let (status, _) =
        call(&app, "sk-files-b-0123", None, "builtin__minio_upload_object", json!({"key": "3.txt", "text": "x"})).await;
    assert_eq!(status, 200);
}

/// The quota holds for uploads made at once (they all saw the same room before), and for a key
/// that names many users: its users' folders share the key's quota.
#[tokio::test]
async fn a_quota_holds_under_parallel_uploads_and_many_users() {
    let yaml = "builtin_tools:\n  enabled: true\n  files_quota_count: 3\n  files_quota_bytes: 1000\n\
auth:\n  api_keys: [sk-files-admin-0123]\n  keys:\n\
\x20   - key: sk-files-owui-0123\n      trust_user_headers: true\n      tools: [\"builtin__minio_*\"]\n";
    let mut app = TestApp::spawn(yaml).await;
    app.key = Some("sk-files-admin-0123".into());
    app.wait_for_tools(|n| n.iter().any(|t| t == "builtin__minio_upload_object")).await;
    let key = "sk-files-owui-0123";
    let uploads = (0..8).map(|i| {
        let app = &app;
        async move {
            let args = json!({"key": format!("{i}.txt"), "text": "x"});
            call(app, key, Some("alice"), "builtin__minio_upload_object", args).await.0
        }
    });
    let statuses = futures_util::future::join_all(uploads).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "{statuses:?}");
    // Another user behind the same key: the key's quota is spent.
    let (status, body) =
        call(&app, key, Some("bob"), "builtin__minio_upload_object", json!({"key": "b.txt", "text": "x"})).await;
    assert_ne!(status, 200, "a new user name is not new room: {body}");
}
