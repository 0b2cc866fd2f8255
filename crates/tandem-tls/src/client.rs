//! The HTTPS client for the cluster channel: reqwest over this node's rustls client configuration.

use crate::{ClusterTls, TlsError};

impl ClusterTls {
    /// A reqwest builder that speaks mutual TLS to other nodes (`https://` URLs only): it presents
    /// this node's certificate and accepts a server whose certificate chains to the trust anchors
    /// under the name [`crate::CLUSTER_SERVER_NAME`], whatever address is dialled. Add timeouts,
    /// redirect policy and so on, then `build()`. Certificate rotation is picked up by clients
    /// already built.
    pub fn https_client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .tls_backend_preconfigured(self.client_config())
            .https_only(true)
    }

    /// [`ClusterTls::https_client_builder`] with reqwest's defaults.
    pub fn https_client(&self) -> Result<reqwest::Client, TlsError> {
        self.https_client_builder()
            .build()
            .map_err(TlsError::HttpClient)
    }
}
