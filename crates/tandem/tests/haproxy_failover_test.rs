//! The HAProxy configuration docs/high-availability.md gives, run by Debian's `haproxy` in front
//! of three servers: killing the active server under a steady write load through HAProxy, writes
//! are acknowledged again within a second.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tandem_testkit::{free_ports, Cluster, SteadyWrites, API_SECRET, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// The failover must reach writes within this (Tandem's own failover is about 0.55 s).
const WITHIN: Duration = Duration::from_secs(1);

/// The documented configuration: the `haproxy` block under the HAProxy heading.
fn documented_config() -> String {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/high-availability.md");
    let text = std::fs::read_to_string(&doc).expect("docs/high-availability.md");
    let section = text
        .split("### HAProxy: every node in rotation")
        .nth(1)
        .expect("the HAProxy section");
    let block = section
        .split("```haproxy\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a haproxy block");
    block.to_string()
}

#[tokio::test]
async fn writes_through_the_documented_haproxy_resume_within_a_second_of_killing_the_active_server()
{
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let port = free_ports(1).expect("a free port")[0];
    let mut config = documented_config().replace("127.0.0.1:8200", &format!("127.0.0.1:{port}"));
    for i in 0..3 {
        config = config.replace(&format!("10.0.0.{}:8200", i + 1), cluster.api_addr(i));
    }
    assert!(
        !config.contains("10.0.0."),
        "every server address replaced:\n{config}"
    );
    let dir = tempfile::tempdir().expect("a folder");
    let config_path = dir.path().join("haproxy.cfg");
    std::fs::write(&config_path, &config).expect("write the config");
    let mut haproxy = tokio::process::Command::new("haproxy")
        .arg("-f")
        .arg(&config_path)
        .arg("-db")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start haproxy (Debian: apt-get install haproxy)");

    let balancer = vec![format!("127.0.0.1:{port}")];
    let client = tandem_client::Client::new(&balancer, Some(API_SECRET.to_string()))
        .expect("a client")
        .with_deadline(DEADLINE);
    let writes = SteadyWrites::start(client, "through-haproxy-");
    writes.wait_for_progress(50).await;
    assert!(
        haproxy.try_wait().expect("haproxy").is_none(),
        "haproxy runs"
    );

    let before = writes.acknowledged();
    let killed_at = Instant::now();
    cluster.kill(leader);
    let mut resumed = None;
    while killed_at.elapsed() < DEADLINE {
        // The one write in flight at the kill may have been acknowledged by the old active
        // server just before: the second one after it went through a new one.
        if writes.acknowledged() > before + 1 {
            resumed = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resumed = resumed.expect("writes resumed through haproxy");
    writes.wait_for_progress(50).await;
    let log = writes.finish().await;
    println!("kill -> first acknowledged write through haproxy: {resumed:?}");
    assert!(
        resumed <= WITHIN,
        "writes resumed {resumed:?} after the kill; the documented setup promises under {WITHIN:?}"
    );
    assert!(
        log.failed.is_empty(),
        "the retrying client saw failed writes: {:?}",
        log.failed
    );
}
