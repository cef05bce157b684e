use super::*;

fn open(dir: &Path, max: u64) -> Opened {
    Spool::open(dir, max, FsyncPolicy::Never).unwrap()
}

fn put(s: &mut Spool, i: u8, n: usize) -> (u64, u64, u64) {
    let rec = record::encode(&vec![i; n], b"", 1);
    let (seg, off) = s.append(&rec).unwrap();
    (seg, off, rec.len() as u64)
}

fn payloads(s: &mut Spool, found: &[Found]) -> Vec<u8> {
    found
        .iter()
        .map(|f| s.read(f.seg, f.off, f.len).unwrap().payload[0])
        .collect()
}

#[test]
fn replays_in_order_after_reopen_and_remembers_progress() {
    let d = tempfile::tempdir().unwrap();
    let mut o = open(d.path(), 1 << 20);
    let places: Vec<_> = (0..10u8).map(|i| put(&mut o.spool, i, 100)).collect();
    // Two delivered: the ack names the third record.
    o.spool.advance(Some((places[2].0, places[2].1))).unwrap();
    drop(o);
    let mut o = open(d.path(), 1 << 20);
    assert_eq!(o.found.len(), 8);
    let found = o.found.clone();
    assert_eq!(payloads(&mut o.spool, &found), (2..10).collect::<Vec<_>>());
    // Everything delivered: nothing left, no files.
    o.spool.advance(None).unwrap();
    drop(o);
    let o = open(d.path(), 1 << 20);
    assert!(o.found.is_empty());
    assert_eq!(segment_ids(d.path()).unwrap(), Vec::<u64>::new());
}

#[test]
fn torn_tail_and_corrupted_middle_are_skipped() {
    let d = tempfile::tempdir().unwrap();
    let mut o = open(d.path(), 1 << 20);
    for i in 0..5u8 {
        put(&mut o.spool, i, 50);
    }
    drop(o);
    let seg = seg_path(d.path(), segment_ids(d.path()).unwrap()[0]);
    let mut bytes = std::fs::read(&seg).unwrap();
    // Flip a payload byte of record 1 (66 bytes per record) and tear record 4 in half.
    bytes[66 + 20] ^= 0xff;
    bytes.truncate(66 * 4 + 30);
    std::fs::write(&seg, &bytes).unwrap();
    let mut o = open(d.path(), 1 << 20);
    assert_eq!(o.found.len(), 3);
    assert_eq!(o.skipped_spans, 2);
    assert_eq!(o.skipped_bytes, 66 + 30);
    let found = o.found.clone();
    assert_eq!(payloads(&mut o.spool, &found), vec![0, 2, 3]);
}

#[test]
fn an_ack_past_the_end_or_off_a_boundary_is_ignored() {
    let d = tempfile::tempdir().unwrap();
    let mut o = open(d.path(), 1 << 20);
    let places: Vec<_> = (0..4u8).map(|i| put(&mut o.spool, i, 100)).collect();
    let seg = places[0].0;
    drop(o);
    for bogus in [
        format!("{} 0", seg + 7),
        format!("{seg} 99999"),
        format!("{seg} 17"),
        "garbage".to_string(),
        format!("{seg} 0 1"),
    ] {
        std::fs::write(d.path().join("ack"), &bogus).unwrap();
        let o = open(d.path(), 1 << 20);
        assert_eq!(o.found.len(), 4, "`{bogus}` must not skip anything");
    }
    // A real boundary is trusted; so is "the next segment" (a crash between ack and delete).
    std::fs::write(d.path().join("ack"), format!("{seg} {}", places[1].1)).unwrap();
    assert_eq!(open(d.path(), 1 << 20).found.len(), 3);
    std::fs::write(d.path().join("ack"), format!("{} 0", seg + 1)).unwrap();
    assert_eq!(open(d.path(), 1 << 20).found.len(), 0);
}

#[test]
fn small_filesystems_get_small_segments_and_rotation_keeps_order() {
    let d = tempfile::tempdir().unwrap();
    let mut o = open(d.path(), 64 << 10);
    assert_eq!(o.spool.segment_bytes, 16 << 10);
    for i in 0..100u8 {
        put(&mut o.spool, i, 1000);
    }
    assert!(o.spool.segs.len() > 4);
    assert_eq!(o.spool.bytes(), 100 * 1016);
    drop(o);
    let mut o = open(d.path(), 64 << 10);
    let found = o.found.clone();
    assert_eq!(payloads(&mut o.spool, &found), (0..100).collect::<Vec<_>>());
}

#[test]
fn a_removed_directory_or_tail_is_noticed_and_the_directory_comes_back() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("metrics");
    let mut o = open(&dir, 1 << 20);
    let (seg, _, _) = put(&mut o.spool, 1, 10);
    assert_eq!(o.spool.vanished(), None);
    std::fs::remove_file(seg_path(&dir, seg)).unwrap();
    assert!(matches!(o.spool.vanished(), Some(Vanished::Segment(s, _)) if s == seg));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(o.spool.vanished(), Some(Vanished::Dir(_))));
    o.spool.reset().unwrap();
    assert_eq!(o.spool.vanished(), None);
    put(&mut o.spool, 2, 10);
    drop(o);
    assert_eq!(open(&dir, 1 << 20).found.len(), 1);
}

#[test]
fn the_flat_layout_moves_into_metrics_once() {
    let d = tempfile::tempdir().unwrap();
    let mut o = open(d.path(), 1 << 20);
    put(&mut o.spool, 7, 10);
    drop(o);
    let metrics = d.path().join("metrics");
    migrate_flat_layout(d.path(), &metrics);
    assert!(segment_ids(d.path()).unwrap().is_empty());
    let mut o = open(&metrics, 1 << 20);
    let found = o.found.clone();
    assert_eq!(payloads(&mut o.spool, &found), vec![7]);
}

#[test]
fn check_reports_waiting_data_and_writability() {
    let d = tempfile::tempdir().unwrap();
    let (ok, detail) = inspect(&d.path().join("spool"));
    assert!(ok && detail.contains("not created yet"), "{detail}");
    let mut o = open(&d.path().join("metrics"), 1 << 20);
    put(&mut o.spool, 1, 10);
    let (ok, detail) = inspect(d.path());
    assert!(
        ok && detail.contains("metrics: 1 segment file(s)"),
        "{detail}"
    );
}
