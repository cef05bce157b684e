//! AMD and Intel GPUs through the kernel's DRM sysfs files (`/sys/class/drm/cardN/device/`).
//!
//! The `amdgpu` driver publishes what we need as plain files, so there is no library to load:
//! `gpu_busy_percent` (0–100), `mem_info_vram_total`/`mem_info_vram_used` (bytes) and, under
//! `hwmon/hwmonN/`, `temp1_input` (edge sensor, millidegrees Celsius) and `power1_average` (or
//! `power1_input` on newer kernels and GPUs; microwatts). Intel's `i915`/`xe` drivers expose less:
//! no busy percent, and for discrete cards hwmon energy (`energy1_input`, microjoules, turned into
//! watts between two samples) and, with `xe`, temperatures. What a card does not expose is left
//! out, never reported as zero.
//!
//! Cards are found by listing `class/drm/card<N>` (connectors such as `card0-DP-1` and render
//! nodes are skipped) and keeping PCI vendors 0x1002 (AMD) and 0x8086 (Intel); NVIDIA (0x10de) is
//! measured through NVML. The files are read through kept descriptors ([`ProcFile`]). A card whose
//! files vanish (unbound, hot-unplugged) is dropped, and the card list is rebuilt on the next
//! rediscovery, so it is measured again when it comes back.

use super::{Gpu, GpuInfo, GpuReading};
use crate::sys::procfile::ProcFile;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub(crate) const VENDOR_AMD: u32 = 0x1002;
pub(crate) const VENDOR_INTEL: u32 = 0x8086;
pub(crate) const VENDOR_NVIDIA: u32 = 0x10de;

/// Parses a sysfs number: decimal, or hex with `0x` (vendor/device ids).
pub(crate) fn parse_num(text: &str) -> Option<u64> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// `KEY=value` from a `uevent` file.
pub(crate) fn uevent_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k == key).then_some(v.trim())
    })
}

/// Is `name` a DRM card (`card0`), not a connector (`card0-HDMI-A-1`) or render node?
pub(crate) fn is_card_name(name: &str) -> bool {
    name.strip_prefix("card")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

pub(crate) fn vendor_name(vendor: u32) -> &'static str {
    match vendor {
        VENDOR_AMD => "AMD",
        VENDOR_INTEL => "Intel",
        VENDOR_NVIDIA => "NVIDIA",
        _ => "unknown",
    }
}

/// Looks a device up in the PCI ID database (`pci.ids` format: vendor lines at column 0, device
/// lines after one tab). Returns the device's name.
pub(crate) fn pci_ids_lookup(db: &str, vendor: u32, device: u32) -> Option<String> {
    let vendor_hex = format!("{vendor:04x}");
    let device_hex = format!("{device:04x}");
    let mut in_vendor = false;
    for line in db.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if !line.starts_with('\t') {
            if in_vendor {
                return None;
            }
            in_vendor = line.len() > 4 && line[..4].eq_ignore_ascii_case(&vendor_hex);
            continue;
        }
        if in_vendor && !line.starts_with("\t\t") {
            let rest = &line[1..];
            if rest.len() > 4 && rest[..4].eq_ignore_ascii_case(&device_hex) {
                return Some(rest[4..].trim().to_string()).filter(|s| !s.is_empty());
            }
        }
    }
    None
}

/// Where distributions keep the PCI ID database, relative to the host root.
const PCI_IDS: [&str; 3] = [
    "usr/share/misc/pci.ids",
    "usr/share/hwdata/pci.ids",
    "usr/share/pci.ids",
];

/// A file read every cycle, if the card has it.
fn optional_file(path: PathBuf) -> Option<ProcFile> {
    path.exists().then(|| ProcFile::new(path))
}

/// The first hwmon directory of a card (amdgpu has exactly one).
fn hwmon_dir(device: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(device.join("hwmon"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("hwmon"))
        })
        .collect();
    dirs.sort();
    dirs.into_iter().next()
}

/// The lowest-numbered `temp<N>_input` of a hwmon directory (`temp1` = edge on amdgpu).
fn first_temp(hwmon: &Path) -> Option<PathBuf> {
    (1..=8)
        .map(|n| hwmon.join(format!("temp{n}_input")))
        .find(|p| p.exists())
}

/// One card and the files read from it each cycle.
pub(crate) struct Card {
    pub(crate) info: GpuInfo,
    busy: Option<ProcFile>,
    vram_total: Option<ProcFile>,
    vram_used: Option<ProcFile>,
    temp: Option<ProcFile>,
    power: Option<ProcFile>,
    energy: Option<ProcFile>,
    last_energy: Option<(u64, Instant)>,
}

/// Reads a card's static facts. `None` when it is not an AMD/Intel GPU.
pub(crate) fn open_card(
    sys: &Path,
    rootfs: &Path,
    card: &str,
    pci_db: &mut Option<String>,
) -> Option<Card> {
    let device = sys.join("class/drm").join(card).join("device");
    let read = |rel: &str| std::fs::read_to_string(device.join(rel)).ok();
    let vendor = read("vendor").and_then(|v| parse_num(&v))? as u32;
    if vendor != VENDOR_AMD && vendor != VENDOR_INTEL {
        return None;
    }
    let device_id = read("device").and_then(|v| parse_num(&v)).unwrap_or(0) as u32;
    // Display controllers only (class 0x03xxxx); an Intel card without it is some other function.
    if let Some(class) = read("class").and_then(|v| parse_num(&v))
        && class >> 16 != 0x03
    {
        return None;
    }
    let uevent = read("uevent").unwrap_or_default();
    let driver = uevent_field(&uevent, "DRIVER")
        .map(str::to_string)
        .or_else(|| {
            std::fs::read_link(device.join("driver"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_default();
    let bus_id = uevent_field(&uevent, "PCI_SLOT_NAME")
        .map(str::to_string)
        .or_else(|| {
            std::fs::canonicalize(&device)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .map(|b| super::normalize_bus_id(&b));
    let product = read("product_name")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let model = product
        .or_else(|| {
            if pci_db.is_none() {
                *pci_db = Some(
                    PCI_IDS
                        .iter()
                        .find_map(|p| std::fs::read_to_string(rootfs.join(p)).ok())
                        .unwrap_or_default(),
                );
            }
            pci_ids_lookup(pci_db.as_deref().unwrap_or(""), vendor, device_id)
        })
        .unwrap_or_else(|| format!("{} GPU {vendor:04x}:{device_id:04x}", vendor_name(vendor)));
    let driver_version = (!driver.is_empty())
        .then(|| std::fs::read_to_string(sys.join("module").join(&driver).join("version")).ok())
        .flatten()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let vram_total_value = read("mem_info_vram_total").and_then(|v| parse_num(&v));
    let hwmon = hwmon_dir(&device);
    let power = hwmon.as_ref().and_then(|h| {
        ["power1_average", "power1_input"]
            .iter()
            .map(|f| h.join(f))
            .find(|p| p.exists())
            .map(ProcFile::new)
    });
    let energy = match (&power, &hwmon) {
        (None, Some(h)) => optional_file(h.join("energy1_input")),
        _ => None,
    };
    Some(Card {
        info: GpuInfo {
            id: bus_id.clone().unwrap_or_else(|| card.to_string()),
            name: card.to_string(),
            vendor: vendor_name(vendor).into(),
            model,
            bus_id,
            driver,
            driver_version,
            memory_total: vram_total_value,
            source: "sysfs",
        },
        busy: optional_file(device.join("gpu_busy_percent")),
        vram_total: optional_file(device.join("mem_info_vram_total")),
        vram_used: optional_file(device.join("mem_info_vram_used")),
        temp: hwmon.as_deref().and_then(first_temp).map(ProcFile::new),
        power,
        energy,
        last_energy: None,
    })
}

/// Result of reading one card: its reading and the files that failed (path, error, gone?).
pub(crate) struct CardRead {
    pub(crate) reading: GpuReading,
    pub(crate) errors: Vec<(String, String)>,
    pub(crate) gone: bool,
}

fn read_value(
    f: &mut Option<ProcFile>,
    errors: &mut Vec<(String, String)>,
    gone: &mut bool,
) -> Option<u64> {
    let file = f.as_mut()?;
    match file.read_str() {
        Ok(text) => {
            let v = parse_num(text);
            if v.is_none() {
                errors.push((
                    file.path().display().to_string(),
                    format!("{}: unexpected content", file.path().display()),
                ));
            }
            v
        }
        Err(e) => {
            *gone |= e.is_gone();
            errors.push((file.path().display().to_string(), e.to_string()));
            None
        }
    }
}

impl Card {
    pub(crate) fn read(&mut self, now: Instant) -> CardRead {
        let mut errors = Vec::new();
        let mut gone = false;
        let mut r = GpuReading {
            utilization: read_value(&mut self.busy, &mut errors, &mut gone)
                .map(|p| p.min(100) as f64 / 100.0),
            memory_total: read_value(&mut self.vram_total, &mut errors, &mut gone),
            memory_used: read_value(&mut self.vram_used, &mut errors, &mut gone),
            temperature_c: read_value(&mut self.temp, &mut errors, &mut gone)
                .map(|m| m as f64 / 1000.0),
            power_w: read_value(&mut self.power, &mut errors, &mut gone).map(|uw| uw as f64 / 1e6),
        };
        if let Some(uj) = read_value(&mut self.energy, &mut errors, &mut gone) {
            if let Some((prev, at)) = self.last_energy {
                let dt = now.duration_since(at).as_secs_f64();
                if uj >= prev && dt > 0.0 {
                    r.power_w = Some((uj - prev) as f64 / 1e6 / dt);
                }
            }
            self.last_energy = Some((uj, now));
        }
        CardRead {
            reading: r,
            errors,
            gone,
        }
    }
}

/// AMD/Intel cards under a sysfs root.
pub(crate) struct DrmSampler {
    sys: PathBuf,
    rootfs: PathBuf,
    cards: Vec<Card>,
    pub(crate) last_scan: Option<Instant>,
}

impl DrmSampler {
    pub(crate) fn new(sys: PathBuf, rootfs: PathBuf) -> Self {
        DrmSampler {
            sys,
            rootfs,
            cards: Vec::new(),
            last_scan: None,
        }
    }

    /// Lists the cards again (at start, after a card vanished, and periodically).
    pub(crate) fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        let mut names: Vec<String> = std::fs::read_dir(self.sys.join("class/drm"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| is_card_name(n))
                    .collect()
            })
            .unwrap_or_default();
        names.sort_by_key(|n| n[4..].parse::<u32>().unwrap_or(u32::MAX));
        let mut db = None;
        let mut known = std::mem::take(&mut self.cards);
        let mut cards: Vec<Card> = Vec::new();
        for name in names {
            // A card seen before at the same PCI address is kept as it is (its descriptors, its
            // model name, its energy baseline): a rescan costs one uevent read per card.
            let slot = std::fs::read_to_string(
                self.sys.join("class/drm").join(&name).join("device/uevent"),
            )
            .ok()
            .and_then(|u| uevent_field(&u, "PCI_SLOT_NAME").map(super::normalize_bus_id));
            let card = match known
                .iter()
                .position(|c| c.info.name == name && slot.is_some() && c.info.bus_id == slot)
            {
                Some(i) => Some(known.swap_remove(i)),
                None => open_card(&self.sys, &self.rootfs, &name, &mut db),
            };
            if let Some(card) = card
                && !cards
                    .iter()
                    .any(|c| c.info.bus_id.is_some() && c.info.bus_id == card.info.bus_id)
            {
                cards.push(card);
            }
        }
        self.cards = cards;
    }

    /// Reads every card; returns the GPUs, the errors (keyed by file) and whether a card vanished.
    pub(crate) fn sample(&mut self) -> (Vec<Gpu>, Vec<(String, String)>, bool) {
        self.sample_at(Instant::now())
    }

    /// [`Self::sample`] at a given instant (energy-derived power depends on the time between reads).
    pub(crate) fn sample_at(&mut self, now: Instant) -> (Vec<Gpu>, Vec<(String, String)>, bool) {
        let mut gpus = Vec::new();
        let mut errors = Vec::new();
        let mut vanished = false;
        for card in &mut self.cards {
            let r = card.read(now);
            errors.extend(r.errors);
            if r.gone {
                vanished = true;
                continue;
            }
            let mut info = card.info.clone();
            if r.reading.memory_total.is_some() {
                info.memory_total = r.reading.memory_total;
            }
            gpus.push(Gpu {
                info,
                reading: r.reading,
            });
        }
        (gpus, errors, vanished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_numbers_and_names() {
        assert_eq!(parse_num("0x1002\n"), Some(0x1002));
        assert_eq!(parse_num("45000\n"), Some(45000));
        assert_eq!(parse_num("garbage"), None);
        assert_eq!(parse_num(""), None);
        assert!(is_card_name("card0") && is_card_name("card12"));
        assert!(
            !is_card_name("card0-DP-1") && !is_card_name("renderD128") && !is_card_name("card")
        );
        let ue = "DRIVER=amdgpu\nPCI_SLOT_NAME=0000:0b:00.0\n";
        assert_eq!(uevent_field(ue, "PCI_SLOT_NAME"), Some("0000:0b:00.0"));
        assert_eq!(uevent_field(ue, "DRIVER"), Some("amdgpu"));
        assert_eq!(uevent_field(ue, "NOPE"), None);
    }

    #[test]
    fn pci_ids_database() {
        let db = "# comment\n1002  Advanced Micro Devices, Inc. [AMD/ATI]\n\t73bf  Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]\n\t\t1002 0e3a  Radeon RX 6900 XT\n\t744c  Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]\n8086  Intel Corporation\n\t56a0  DG2 [Arc A770]\n";
        assert_eq!(
            pci_ids_lookup(db, 0x1002, 0x73bf).as_deref(),
            Some("Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]")
        );
        assert_eq!(
            pci_ids_lookup(db, 0x8086, 0x56a0).as_deref(),
            Some("DG2 [Arc A770]")
        );
        assert_eq!(pci_ids_lookup(db, 0x8086, 0x73bf), None);
        assert_eq!(pci_ids_lookup("", 0x1002, 0x73bf), None);
    }
}
