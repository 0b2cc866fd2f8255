//! The cluster channel end to end: real sockets on 127.0.0.1, an axum server on `TlsListener`,
//! the reqwest client of `ClusterTls`. One file per behaviour.

mod support;

mod mutual_tls_test;
mod own_ca_files_test;
mod refused_peers_test;
mod rotation_test;
mod secret_rotation_test;
