//! Which Wings server a container is, from the running agent's discovery: the inventory joins
//! containers to the Wings API's servers (name = server UUID), so the logs carry the server's
//! name as the metrics do; without a match, Wings' labels alone.

use crate::sources::containers::Inventory;
use crate::sources::logs::{ByLabels, Servers};
use crate::state::Containers;
use std::collections::BTreeMap;

fn server_of(
    inv: &Inventory,
    id: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Option<(String, Option<String>)> {
    if name.ends_with("_installer")
        || labels.get("ContainerType").map(String::as_str) == Some("server_installer")
    {
        return None;
    }
    if let Some(c) = inv.container(id)
        && let Some(u) = &c.server_uuid
    {
        return Some((u.clone(), c.server_name.clone()));
    }
    if let Some(s) = inv.server(name) {
        return Some((s.uuid.clone(), Some(s.name.clone())));
    }
    ByLabels.server(id, name, labels)
}

impl Servers for Containers {
    fn server(
        &self,
        id: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<(String, Option<String>)> {
        server_of(&self.inventory(), id, name, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::containers::ContainerInfo;
    use crate::sources::containers::wings::Server;

    #[test]
    fn servers_from_the_inventory_then_the_labels() {
        let u = "8c3f1e2a-5b6d-4e7f-9a0b-1c2d3e4f5a6b";
        let none = BTreeMap::new();
        let mut inv = Inventory::default();
        inv.servers.push(Server {
            uuid: u.into(),
            name: "Survival".into(),
            ..Default::default()
        });
        inv.containers.push(std::sync::Arc::new(ContainerInfo {
            id: "c2".into(),
            name: "other-name".into(),
            server_uuid: Some(u.into()),
            server_name: Some("Survival".into()),
            ..Default::default()
        }));
        // A Wings server's UUID as the name, unlabelled: known by name.
        let want = Some((u.to_string(), Some("Survival".to_string())));
        assert_eq!(server_of(&inv, "c1", u, &none), want);
        // Joined by discovery.
        assert_eq!(server_of(&inv, "c2", "other-name", &none), want);
        // The installer never.
        assert_eq!(
            server_of(&inv, "c3", &format!("{u}_installer"), &none),
            None
        );
        // Labels alone.
        let l: BTreeMap<String, String> =
            [("Service".to_string(), "Pterodactyl".to_string())].into();
        let v = "0a1b2c3d-0000-4000-8000-00000000000a";
        assert_eq!(server_of(&inv, "c4", v, &l), Some((v.to_string(), None)));
        assert_eq!(server_of(&inv, "c5", "redis", &none), None);
    }
}
