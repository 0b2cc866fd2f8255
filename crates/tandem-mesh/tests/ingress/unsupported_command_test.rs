use tandem_mesh::ingress::Socks5Auth;

use crate::support::{
    ask, ended, greeted, limits, request, socks5, EchoTarget, Ended, Route, StandIn, Target, BIND,
    UDP_ASSOCIATE,
};

#[tokio::test]
async fn bind_udp_associate_and_unknown_commands_are_not_supported() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("echo.internal", Route::To(echo.addr))]);
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, limits()).await;

    for command in [BIND, UDP_ASSOCIATE, 0x09] {
        let mut client = greeted(proxy).await;
        let code = ask(
            &mut client,
            &request(command, Target::Domain("echo.internal", 80)),
        )
        .await;
        assert_eq!(code, 0x07, "command {command:#04x}");
        assert_eq!(ended(&mut client).await, Ended::Closed);
    }
    assert_eq!(dialer.dial_count(), 0);
    assert_eq!(echo.accepted(), 0);
}
