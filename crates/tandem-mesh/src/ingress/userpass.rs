//! The username/password sub-negotiation of RFC 1929, plugged into fast-socks5's handshake as
//! an auth method of our own.
//!
//! fast-socks5 has one built in, but it logs the username and the password bytes at debug
//! level — and here the password may be a Tandem token — and it answers a refusal with status
//! 0xFF. This one never logs the password and answers 0x01, as most servers do (RFC 1929
//! only asks for a non-zero status), then the connection is closed.

use std::fmt;
use std::io;

use fast_socks5::consts::SOCKS5_AUTH_METHOD_PASSWORD;
use fast_socks5::server::{AuthMethod, AuthMethodSuccessState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::socks5::CredentialCheck;

/// The version byte of the sub-negotiation (not SOCKS's 5).
const SUBNEGOTIATION_VERSION: u8 = 0x01;
pub(super) const STATUS_SUCCESS: u8 = 0x00;
pub(super) const STATUS_FAILURE: u8 = 0x01;

/// Why the sub-negotiation did not authenticate the client.
#[derive(Debug, thiserror::Error)]
pub enum UserPasswordError {
    #[error("username/password version {0:#04x}, expected 0x01")]
    Version(u8),
    #[error("reading or answering username/password: {0}")]
    Io(#[from] io::Error),
    /// Wrong credentials (or not UTF-8); the client was told so before the close.
    #[error("username/password refused for user {username:?}")]
    Refused { username: String },
}

/// The auth method fast-socks5 negotiates (method 0x02) and hands the socket to.
#[derive(Clone, Copy, Debug)]
pub(super) struct UserPassword;

/// The socket after method 0x02 was chosen, before the credentials are read.
pub(super) struct Started<T>(T);

/// The socket after the credentials were accepted.
pub(super) struct Accepted<T>(T);

impl<T> AuthMethod<T> for UserPassword {
    type StartingState = Started<T>;

    fn method_id(self) -> u8 {
        SOCKS5_AUTH_METHOD_PASSWORD
    }

    fn new(self, inner: T) -> Started<T> {
        Started(inner)
    }
}

impl<T> AuthMethodSuccessState<T> for Accepted<T> {
    fn into_inner(self) -> T {
        self.0
    }
}

/// What the client sent, as bytes: RFC 1929 does not say they are UTF-8.
struct Credentials {
    username: Vec<u8>,
    password: Vec<u8>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password, even by accident.
        f.debug_struct("Credentials")
            .field("username", &String::from_utf8_lossy(&self.username))
            .finish_non_exhaustive()
    }
}

/// Reads the client's username and password, asks `check`, and answers.
pub(super) async fn authenticate<T>(
    started: Started<T>,
    check: &CredentialCheck,
) -> Result<Accepted<T>, UserPasswordError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = started.0;
    let credentials = read_credentials(&mut stream).await?;
    let accepted = is_accepted(&credentials, check).await;
    let status = if accepted {
        STATUS_SUCCESS
    } else {
        STATUS_FAILURE
    };
    stream.write_all(&[SUBNEGOTIATION_VERSION, status]).await?;
    stream.flush().await?;
    if accepted {
        Ok(Accepted(stream))
    } else {
        Err(UserPasswordError::Refused {
            username: String::from_utf8_lossy(&credentials.username).into_owned(),
        })
    }
}

/// `VER ULEN UNAME PLEN PASSWD`; each length is one byte, so nothing read is over 255 bytes.
async fn read_credentials<T: AsyncRead + Unpin>(
    stream: &mut T,
) -> Result<Credentials, UserPasswordError> {
    let version = stream.read_u8().await?;
    if version != SUBNEGOTIATION_VERSION {
        return Err(UserPasswordError::Version(version));
    }
    let username = read_field(stream).await?;
    let password = read_field(stream).await?;
    Ok(Credentials { username, password })
}

async fn read_field<T: AsyncRead + Unpin>(stream: &mut T) -> io::Result<Vec<u8>> {
    let len = stream.read_u8().await?;
    let mut field = vec![0u8; usize::from(len)];
    stream.read_exact(&mut field).await?;
    Ok(field)
}

/// Credentials that are not UTF-8 cannot match a configured user or a token: refused.
async fn is_accepted(credentials: &Credentials, check: &CredentialCheck) -> bool {
    match (
        std::str::from_utf8(&credentials.username),
        std::str::from_utf8(&credentials.password),
    ) {
        (Ok(username), Ok(password)) => check(username, password).await,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::socks5::Socks5Auth;
    use super::*;

    fn alice() -> CredentialCheck {
        match Socks5Auth::password(|user, password| user == "alice" && password == "s3cret") {
            Socks5Auth::Password(check) => check,
            Socks5Auth::NoAuth => unreachable!("a password check"),
        }
    }

    async fn run(input: &[u8]) -> (Result<(), UserPasswordError>, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(input).await.expect("write");
        // EOF after the input, so a truncated one ends instead of waiting for more.
        client.shutdown().await.expect("shutdown");
        let result = authenticate(Started(server), &alice()).await.map(drop);
        let mut answer = Vec::new();
        // The server side is dropped by now, so this reads to the end.
        client.read_to_end(&mut answer).await.expect("read");
        (result, answer)
    }

    #[tokio::test]
    async fn right_credentials_are_accepted() {
        let (result, answer) = run(b"\x01\x05alice\x06s3cret").await;
        assert!(result.is_ok());
        assert_eq!(answer, [0x01, STATUS_SUCCESS]);
    }

    #[tokio::test]
    async fn a_wrong_password_is_answered_0x01() {
        let (result, answer) = run(b"\x01\x05alice\x05wrong").await;
        assert!(
            matches!(result, Err(UserPasswordError::Refused { ref username }) if username == "alice")
        );
        assert_eq!(answer, [0x01, STATUS_FAILURE]);
    }

    #[tokio::test]
    async fn credentials_that_are_not_utf8_are_refused() {
        let (result, answer) = run(b"\x01\x05alice\x02\xff\xfe").await;
        assert!(matches!(result, Err(UserPasswordError::Refused { .. })));
        assert_eq!(answer, [0x01, STATUS_FAILURE]);
    }

    #[tokio::test]
    async fn a_wrong_version_is_cut_off_without_an_answer() {
        let (result, answer) = run(b"\x05\x05alice\x06s3cret").await;
        assert!(matches!(result, Err(UserPasswordError::Version(0x05))));
        assert!(answer.is_empty());
    }

    #[tokio::test]
    async fn truncated_credentials_are_an_error() {
        let (result, answer) = run(b"\x01\x05ali").await;
        assert!(matches!(result, Err(UserPasswordError::Io(_))));
        assert!(answer.is_empty());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let credentials = Credentials {
            username: b"alice".to_vec(),
            password: b"s3cret".to_vec(),
        };
        let shown = format!("{credentials:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("s3cret"));
    }
}
