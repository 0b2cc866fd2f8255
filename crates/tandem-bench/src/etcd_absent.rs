//! A build without the cargo feature `etcd` (which needs `protoc` to build) cannot drive etcd;
//! `--target etcd` says so before it starts anything.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::answers::{Acknowledger, ReadConsistency};

pub fn available() -> Result<()> {
    bail!(
        "this tandem was built without etcd support; build it with `cargo build --release --features etcd` (needs protoc: apt-get install protobuf-compiler)"
    )
}

/// Never made: [`available`] refuses first.
#[derive(Clone)]
pub enum EtcdKv {}

impl EtcdKv {
    pub async fn connect(_endpoints: &[String], _deadline: Duration) -> Result<EtcdKv> {
        available().map(|()| unreachable!("available() refuses in this build"))
    }

    pub async fn put(&self, _key: &str, _value: &[u8]) -> Result<Acknowledger, String> {
        match *self {}
    }

    pub async fn get(&self, _key: &str, _read: ReadConsistency) -> Result<(), String> {
        match *self {}
    }
}

pub struct MemberStatus {
    pub is_leader: bool,
    pub term: u64,
    pub committed_index: u64,
    pub applied_index: u64,
}

pub async fn member_statuses(
    _endpoints: &[String],
    _probe: Duration,
) -> Vec<(usize, MemberStatus)> {
    Vec::new()
}
