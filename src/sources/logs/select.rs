//! Which containers are followed (`logs = off | servers | all`) and which Pterodactyl server a
//! container is.
//!
//! Wings names a server's container after the server's UUID and labels it
//! `Service=Pterodactyl`, `ContainerType=server_process`; the one-off install container is
//! `<uuid>_installer` with `ContainerType=server_installer` (its output is the install script's
//! and Wings keeps it in its own log, so `servers` leaves it out). Discovery joins containers to
//! the Wings API's servers by that name; when the agent runs with discovery, the runtime's
//! [`Servers`] for its shared inventory gives the server's name too, else the labels alone say
//! "a server, this UUID".

use std::collections::BTreeMap;

use super::config::Selection;

/// Who a container is: what its records' Resource says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub image: String,
    pub server_uuid: Option<String>,
    pub server_name: Option<String>,
}

/// Says which Pterodactyl server, if any, a container is.
pub trait Servers: Send + Sync + 'static {
    /// The server's UUID and, when known, its name.
    fn server(
        &self,
        id: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<(String, Option<String>)>;
}

/// Wings' labels only (no Wings API at hand).
pub struct ByLabels;

fn installer(name: &str, labels: &BTreeMap<String, String>) -> bool {
    name.ends_with("_installer")
        || labels.get("ContainerType").map(String::as_str) == Some("server_installer")
}

impl Servers for ByLabels {
    fn server(
        &self,
        _id: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<(String, Option<String>)> {
        let wings = labels.get("Service").map(String::as_str) == Some("Pterodactyl");
        (wings && !installer(name, labels) && !name.is_empty()).then(|| (name.to_string(), None))
    }
}

/// Whether a container's log is followed.
pub(crate) fn selected(
    sel: Selection,
    servers: &dyn Servers,
    id: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    match sel {
        Selection::Off => false,
        Selection::All => true,
        Selection::Servers => servers.server(id, name, labels).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn servers_by_labels_without_installers() {
        let u = "8c3f1e2a-5b6d-4e7f-9a0b-1c2d3e4f5a6b";
        let l = labels(&[
            ("Service", "Pterodactyl"),
            ("ContainerType", "server_process"),
        ]);
        assert!(selected(Selection::Servers, &ByLabels, "x", u, &l));
        assert_eq!(ByLabels.server("x", u, &l), Some((u.to_string(), None)));
        let inst = labels(&[
            ("Service", "Pterodactyl"),
            ("ContainerType", "server_installer"),
        ]);
        assert!(!selected(
            Selection::Servers,
            &ByLabels,
            "x",
            &format!("{u}_installer"),
            &inst
        ));
        assert!(!selected(
            Selection::Servers,
            &ByLabels,
            "x",
            "redis",
            &BTreeMap::new()
        ));
        assert!(selected(
            Selection::All,
            &ByLabels,
            "x",
            "redis",
            &BTreeMap::new()
        ));
        assert!(!selected(Selection::Off, &ByLabels, "x", u, &l));
    }
}
