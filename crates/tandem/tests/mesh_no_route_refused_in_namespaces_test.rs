//! No route, no connection, with every agent in a network namespace of its own: a SOCKS5
//! CONNECT to an address that no exit advertises gets a SOCKS5 error at once, and the server at
//! that address (which the ingress could reach directly) sees no connection: the ingress never
//! dials around the mesh.

use std::path::Path;
use std::time::Duration;

use tandem_testkit::mesh::{bytes_path, pattern, MeshOptions, MeshTopology};
use tokio::time::Instant;

/// curl's exit code for a proxy handshake that failed (CURLE_PROXY, curl 7.73 and later).
const CURLE_PROXY: i32 = 97;

#[tokio::test(flavor = "multi_thread")]
async fn an_address_without_a_route_gets_a_socks5_error_and_no_connection() {
    let binary = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mesh = MeshTopology::start(binary, MeshOptions::default()).await;
    let url = mesh.outside.url(&bytes_path(100, 1));

    let asked = Instant::now();
    let refused = mesh.curl_socks(&url, Duration::from_secs(5)).await;
    let took = asked.elapsed();
    eprintln!("the SOCKS5 refusal came after {took:?}: {refused:?}");
    assert_eq!(refused, Err(CURLE_PROXY), "a SOCKS5 error reply");
    assert!(took < Duration::from_secs(2), "the refusal took {took:?}");
    assert_eq!(
        mesh.outside.accepted(),
        0,
        "a connection went around the mesh"
    );

    // The count is meaningful: from the ingress's namespace the server is reachable directly.
    let ingress_namespace = mesh.network().namespace(mesh.namespace_of("in-1"));
    let direct = tokio::process::Command::new("ip")
        .args(["netns", "exec", ingress_namespace, "curl", "--silent"])
        .args(["--max-time", "5", &url])
        .output()
        .await
        .expect("ip netns exec curl runs");
    assert_eq!(direct.stdout, pattern(1, 100), "a direct fetch works");
    assert_eq!(mesh.outside.accepted(), 1);
    // And the mesh still carries routed traffic.
    assert!(mesh.fetch_checked(100, 2, Duration::from_secs(5)).await);
}
