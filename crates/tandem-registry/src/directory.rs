//! Which agents a mesh agent is told to peer with: a plain function of the registry's rows, so
//! the servers' handler and the tests decide alike.

use std::collections::BTreeSet;

use crate::wire::DirectoryPeer;

/// An agent's registered place in a mesh, as the registry stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshMember {
    pub name: String,
    pub mesh: String,
    pub address: String,
}

/// The peers offered to agent `asking` of mesh `mesh`: every other member of that mesh that is
/// registered now (whatever its state: a down agent is dialed with backoff until it is back or
/// removed, a draining one still carries what it has) and not revoked, by name.
pub fn mesh_peers(
    asking: &str,
    mesh: &str,
    members: &[MeshMember],
    registered: &BTreeSet<&str>,
    revoked: &BTreeSet<&str>,
) -> Vec<DirectoryPeer> {
    let mut peers: Vec<DirectoryPeer> = members
        .iter()
        .filter(|m| m.mesh == mesh && m.name != asking)
        .filter(|m| registered.contains(m.name.as_str()) && !revoked.contains(m.name.as_str()))
        .map(|m| DirectoryPeer {
            name: m.name.clone(),
            address: m.address.clone(),
        })
        .collect();
    peers.sort();
    peers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, mesh: &str) -> MeshMember {
        MeshMember {
            name: name.into(),
            mesh: mesh.into(),
            address: format!("{name}:4433"),
        }
    }

    #[test]
    fn peers_are_the_other_registered_unrevoked_agents_of_the_same_mesh() {
        let members = [
            member("transit-b", "default"),
            member("exit-a", "default"),
            member("ingress", "default"),
            member("other-mesh", "lab"),
            member("gone", "default"),
            member("revoked", "default"),
        ];
        let registered =
            BTreeSet::from(["transit-b", "exit-a", "ingress", "other-mesh", "revoked"]);
        let revoked = BTreeSet::from(["revoked"]);
        let peers = mesh_peers("ingress", "default", &members, &registered, &revoked);
        let names: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["exit-a", "transit-b"]);
        assert_eq!(peers[0].address, "exit-a:4433");
        let lab = mesh_peers("x", "lab", &members, &registered, &revoked);
        assert_eq!(lab.len(), 1);
        assert!(mesh_peers("x", "none", &members, &registered, &revoked).is_empty());
    }
}
