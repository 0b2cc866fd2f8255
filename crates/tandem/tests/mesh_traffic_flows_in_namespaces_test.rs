//! The mesh carries traffic end to end, with every agent in a network namespace of its own: an
//! ingress, two transits, two exits and a target that only the exits can reach. curl through
//! the ingress's SOCKS5 (`--socks5-hostname`, with the user name and password) and through its
//! port-forward brings back exactly the bytes the target sent; a wrong password is refused and
//! nothing reaches the target. The stable tie-break selects the path from e-1 through t-1, and
//! the target sees every connection come from e-1.

use std::path::Path;
use std::time::Duration;

use tandem_testkit::mesh::{bytes_path, curl, pattern, MeshOptions, MeshTopology};

#[tokio::test(flavor = "multi_thread")]
async fn socks5_and_port_forward_carry_the_right_bytes_through_the_mesh() {
    let binary = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mesh = MeshTopology::start(binary, MeshOptions::default()).await;
    mesh.wait_for_selected("e-1", "t-1").await;

    let len = 256 * 1024;
    let url = mesh.target.url(&bytes_path(len, 11));
    let through_socks = mesh.curl_socks(&url, Duration::from_secs(10)).await;
    assert!(
        through_socks == Ok(pattern(11, len)),
        "SOCKS5: {:?}",
        through_socks.map(|b| b.len())
    );
    let through_forward = mesh
        .curl_forward(&bytes_path(len, 12), Duration::from_secs(10))
        .await;
    assert!(
        through_forward == Ok(pattern(12, len)),
        "port-forward: {:?}",
        through_forward.map(|b| b.len())
    );

    let before = mesh.target.accepted();
    let wrong_password = curl(&[
        "--max-time",
        "5",
        "--socks5-hostname",
        &mesh.socks_addr(),
        "--proxy-user",
        "alice:guess",
        &url,
    ])
    .await;
    assert!(
        wrong_password.is_err(),
        "a wrong SOCKS5 password got through"
    );
    assert_eq!(
        mesh.target.accepted(),
        before,
        "a refused client reached the target"
    );

    let e1 = mesh.ip("e-1");
    let sources = mesh.target.sources();
    assert!(
        !sources.is_empty() && sources.iter().all(|s| *s == e1),
        "every connection comes from e-1 ({e1}): {sources:?}"
    );
}
