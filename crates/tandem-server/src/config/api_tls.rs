//! Whether and how the client API speaks TLS: decided from the settings alone, before anything
//! is bound, so a combination that cannot work stops start-up with a message.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// `api_tls`: TLS with a certificate from the CA derived from the cluster secret, or plain
/// HTTP by explicit choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ApiTlsMode {
    Auto,
    Off,
}

value_enum_text!(ApiTlsMode);

/// How the API is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiTls {
    Plain,
    /// A certificate this server issues itself from the derived API CA.
    Derived,
    /// The operator's certificate chain and key, read again when they change.
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

impl ApiTls {
    /// The URL scheme clients use.
    pub fn scheme(&self) -> &'static str {
        match self {
            ApiTls::Plain => "http",
            ApiTls::Derived | ApiTls::Files { .. } => "https",
        }
    }

    /// Decides from `api_tls`, the two files and the address the API listens on. Plain HTTP
    /// beyond this machine would carry the API secret in clear text, so it must be asked for.
    pub fn choose(
        mode: Option<ApiTlsMode>,
        cert: Option<&PathBuf>,
        key: Option<&PathBuf>,
        listen: &str,
    ) -> Result<ApiTls, String> {
        let files = match (cert, key) {
            (Some(cert), Some(key)) => Some(ApiTls::Files {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(
                    "API TLS from files needs both api_tls_cert_file and api_tls_key_file".into(),
                )
            }
        };
        match (mode, files) {
            (Some(mode), Some(_)) => Err(format!(
                "api_tls = {mode} and api_tls_cert_file/api_tls_key_file cannot be combined: give the files alone for your own certificate, or api_tls = auto for one from the cluster's CA"
            )),
            (None, Some(files)) => Ok(files),
            (Some(ApiTlsMode::Auto), None) => Ok(ApiTls::Derived),
            (Some(ApiTlsMode::Off), None) => Ok(ApiTls::Plain),
            (None, None) if is_loopback(listen) => Ok(ApiTls::Plain),
            (None, None) => Err(format!(
                "the API listens on {listen}, beyond this machine, and would speak plain HTTP, sending the API secret in clear text; choose: --api-tls auto (TANDEM_API_TLS=auto) for a certificate from the cluster's CA (clients get it with `tandem cluster ca`), --api-tls-cert-file and --api-tls-key-file for your own, or --api-tls off for plain HTTP (behind a TLS-terminating proxy or on a trusted network)"
            )),
        }
    }
}

/// True for an address of this machine only: `127.0.0.0/8`, `::1`, `localhost`.
fn is_loopback(host_port: &str) -> bool {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(mode: Option<ApiTlsMode>, files: bool, listen: &str) -> Result<ApiTls, String> {
        let (cert, key) = (PathBuf::from("c.pem"), PathBuf::from("k.pem"));
        let (cert, key) = if files {
            (Some(&cert), Some(&key))
        } else {
            (None, None)
        };
        ApiTls::choose(mode, cert, key, listen)
    }

    #[test]
    fn plain_http_beyond_loopback_must_be_asked_for() {
        for local in [
            "127.0.0.1:8200",
            "127.3.0.1:1",
            "[::1]:8200",
            "localhost:8200",
        ] {
            assert_eq!(choose(None, false, local), Ok(ApiTls::Plain), "{local}");
        }
        for remote in [
            "0.0.0.0:8200",
            "10.0.0.1:8200",
            "[::]:8200",
            "tandem-0.peers:8200",
        ] {
            let refused = choose(None, false, remote).unwrap_err();
            assert!(refused.contains("--api-tls off"), "{refused}");
            assert_eq!(
                choose(Some(ApiTlsMode::Off), false, remote),
                Ok(ApiTls::Plain)
            );
        }
    }

    #[test]
    fn auto_or_files_mean_tls_anywhere() {
        assert_eq!(
            choose(Some(ApiTlsMode::Auto), false, "127.0.0.1:8200"),
            Ok(ApiTls::Derived)
        );
        assert!(matches!(
            choose(None, true, "10.0.0.1:8200"),
            Ok(ApiTls::Files { .. })
        ));
        assert_eq!(ApiTls::Derived.scheme(), "https");
        assert_eq!(ApiTls::Plain.scheme(), "http");
    }

    #[test]
    fn half_or_conflicting_choices_are_refused() {
        let cert = PathBuf::from("c.pem");
        let half = ApiTls::choose(None, Some(&cert), None, "127.0.0.1:1").unwrap_err();
        assert!(half.contains("needs both"), "{half}");
        for mode in [ApiTlsMode::Auto, ApiTlsMode::Off] {
            let both = choose(Some(mode), true, "127.0.0.1:1").unwrap_err();
            assert!(both.contains("cannot be combined"), "{both}");
        }
        assert_eq!("AUTO ".parse::<ApiTlsMode>(), Ok(ApiTlsMode::Auto));
        assert!("on".parse::<ApiTlsMode>().is_err());
    }
}
