//! Who signs this agent's advertisements and checks everyone else's: the table asks through
//! [`OriginProofs`]; [`AgentProofs`] answers with the agents' certificates from the agent CA
//! and the system clock.

use std::fmt;

use tandem_tls::AgentTls;

use crate::advert::{AgentId, OriginProof};

/// Signs this agent's own statements and checks the proofs of other origins, by a wall clock.
pub trait OriginProofs: Send + Sync + fmt::Debug {
    /// Unix milliseconds now: what this agent's advertisements are stamped with, and what it
    /// judges the age of others' by.
    fn unix_now_ms(&self) -> u64;
    /// This agent's proof of `statement`.
    fn prove(&self, statement: &[u8]) -> OriginProof;
    /// Whether `origin` signed `statement`; the error says why not.
    fn check(&self, origin: &AgentId, statement: &[u8], proof: &OriginProof) -> Result<(), String>;
}

/// Proofs with agent certificates: signed with this agent's key, checked against the
/// certificate in the proof, which must be a valid, unrevoked agent certificate of this cluster
/// naming the origin (the same revocations the handshakes use).
#[derive(Clone, Debug)]
pub struct AgentProofs {
    tls: AgentTls,
}

impl AgentProofs {
    pub fn new(tls: AgentTls) -> Self {
        Self { tls }
    }
}

impl OriginProofs for AgentProofs {
    fn unix_now_ms(&self) -> u64 {
        crate::runtime::unix_ms()
    }

    fn prove(&self, statement: &[u8]) -> OriginProof {
        let signature = self.tls.sign(statement).unwrap_or_else(|e| {
            // Peers refuse the empty signature and log it; the next refresh signs again.
            tracing::error!("cannot sign this agent's route advertisement: {e}");
            Vec::new()
        });
        OriginProof {
            certificate: self.tls.certificate().to_vec(),
            signature,
        }
    }

    fn check(&self, origin: &AgentId, statement: &[u8], proof: &OriginProof) -> Result<(), String> {
        self.tls
            .check_signed(
                origin.as_str(),
                &proof.certificate,
                statement,
                &proof.signature,
            )
            .map_err(|e| e.to_string())
    }
}

/// Proofs for the table's unit tests, which are about routing, not cryptography: a "signature"
/// is the signer's name and the statement, so a changed statement or a claimed origin that did
/// not sign fails the check. The wall clock stands still at [`NamedProofs::UNIX_NOW_MS`].
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct NamedProofs {
    pub me: AgentId,
}

#[cfg(test)]
impl NamedProofs {
    pub const UNIX_NOW_MS: u64 = 1_800_000_000_000;

    pub fn signature(signer: &AgentId, statement: &[u8]) -> Vec<u8> {
        [signer.as_str().as_bytes(), b"|", statement].concat()
    }
}

#[cfg(test)]
impl OriginProofs for NamedProofs {
    fn unix_now_ms(&self) -> u64 {
        Self::UNIX_NOW_MS
    }

    fn prove(&self, statement: &[u8]) -> OriginProof {
        OriginProof {
            certificate: Vec::new(),
            signature: Self::signature(&self.me, statement),
        }
    }

    fn check(&self, origin: &AgentId, statement: &[u8], proof: &OriginProof) -> Result<(), String> {
        if proof.signature == Self::signature(origin, statement) {
            Ok(())
        } else {
            Err(format!("not signed by {origin}"))
        }
    }
}
