//! Keys rotate on their own after key_duration; a retired key stays in the key set until the
//! last token it may have signed has expired (token_duration), then leaves it.

use std::path::Path;

use serde_json::json;
use tandem_testkit::{wait_for, wait_until, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_on_schedule_and_leave_after_their_last_token() {
    let cluster = Cluster::start(
        tandem(),
        1,
        &["--key-duration", "5s", "--token-duration", "2s"],
    )
    .await;
    cluster.leader().await;
    let first = wait_for(DEADLINE, "a first signing key", async || {
        cluster.signing_kid(0).await
    })
    .await;
    let token = cluster.issue_token(0, json!({"sub": "early"}), "2s").await;
    assert_eq!(token.kid, first);

    let second = wait_for(DEADLINE, "the scheduled rotation", async || {
        cluster.signing_kid(0).await.filter(|kid| *kid != first)
    })
    .await;
    let kids = cluster.jwks_kids(0).await;
    assert!(kids.contains(&second), "{kids:?}");

    // The retired key leaves once the longest token it could have signed has expired.
    wait_until(
        DEADLINE,
        "the retired key to leave the key set",
        async || !cluster.jwks_kids(0).await.contains(&first),
    )
    .await;
    let listed = cluster.get(0, "/v1/keys").await.expect_status(200).json();
    assert!(
        listed["keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().all(|k| k["kid"] != first.as_str())),
        "{listed}"
    );
    let reply = cluster
        .verify_token(0, &token.token)
        .await
        .expect_api_error(401);
    assert!(
        ["token_expired", "token_unknown_key"].contains(&reply.code.as_str()),
        "{reply:?}"
    );
    // The private key of a retired key is deleted from the data folder.
    let files: Vec<String> = std::fs::read_dir(cluster.data_dir(0).join("keys"))
        .expect("the key folder")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert!(files.iter().all(|f| !f.starts_with(&first)), "{files:?}");
    cluster.assert_no_panics();
}
