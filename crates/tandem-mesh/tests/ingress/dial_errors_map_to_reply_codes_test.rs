use std::time::Duration;

use tandem_mesh::ingress::{IngressLimits, Socks5Auth};
use tandem_mesh::transport::OpenErrorKind;

use crate::support::{limits, socks5, socks_connect, Route, StandIn, Target};

#[tokio::test]
async fn every_refusal_kind_gets_its_reply_code() {
    let cases = [
        ("no-route.test", OpenErrorKind::NoRoute, 0x03),
        ("not-allowed.test", OpenErrorKind::NotAllowed, 0x02),
        ("refused.test", OpenErrorKind::ConnectionRefused, 0x05),
        (
            "host-unreachable.test",
            OpenErrorKind::HostUnreachable,
            0x04,
        ),
        (
            "net-unreachable.test",
            OpenErrorKind::NetworkUnreachable,
            0x03,
        ),
        ("timed-out.test", OpenErrorKind::TimedOut, 0x06),
        ("failed.test", OpenErrorKind::Failed, 0x01),
    ];
    let routes: Vec<_> = cases
        .iter()
        .map(|(host, kind, _)| (*host, Route::Refuse(*kind)))
        .collect();
    let dialer = StandIn::with(&routes);
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, limits()).await;

    for (host, kind, code) in cases {
        let (_client, got) = socks_connect(proxy, Target::Domain(host, 443)).await;
        assert_eq!(got, code, "{kind:?}");
    }
    assert_eq!(dialer.dial_count(), cases.len());
}

#[tokio::test]
async fn a_dialer_that_never_answers_is_a_timeout_reply() {
    let dialer = StandIn::with(&[("slow.test", Route::Hang)]);
    let short = IngressLimits {
        dial_timeout: Duration::from_millis(200),
        ..IngressLimits::default()
    };
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, short).await;

    let (_client, code) = socks_connect(proxy, Target::Domain("slow.test", 443)).await;
    assert_eq!(code, 0x06, "TTL expired, the timeout code");
}
