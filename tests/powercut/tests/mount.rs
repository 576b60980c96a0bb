//! The harness through a real FUSE mount: what was synced survives a power
//! cut, what was only written, closed or `sync_file_range`d does not.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    path::Path,
};

use samenop_powercut::{Cut, Mount};

/// The tests here run one at a time: a process one of them starts holds
/// copies of every open file of the test process until it has started, so
/// another test's unmount at that moment fails with EBUSY (seen in CI).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn mount(dir: &Path) -> Option<Mount> {
    Mount::for_test(dir)
}

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

#[test]
fn what_was_synced_survives_a_cut_and_nothing_else_does() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let Some(mut fs) = mount(dir.path()) else {
        return;
    };
    let root = fs.path().to_owned();
    let data = root.join("data");
    fs::create_dir(&data).unwrap();
    sync_dir(&root);

    let mut kept = File::create(data.join("kept")).unwrap();
    sync_dir(&data);
    kept.write_all(b"acknowledged").unwrap();
    kept.sync_data().unwrap();
    kept.write_all(b" and then some").unwrap();
    drop(kept);

    File::create(data.join("ranged")).unwrap();
    sync_dir(&data);
    // Written and sync_file_range'd as sled 0.34 does, by a program that may
    // call it (this workspace forbids unsafe code).
    let ranged = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, sys\n\
             fd = os.open(sys.argv[1], os.O_WRONLY)\n\
             os.write(fd, b'only range-synced')\n\
             os.sync_file_range(fd, 0, 0, os.SYNC_FILE_RANGE_WAIT_BEFORE \
             | os.SYNC_FILE_RANGE_WRITE | os.SYNC_FILE_RANGE_WAIT_AFTER)\n",
        ])
        .arg(data.join("ranged"))
        .status()
        .is_ok_and(|status| status.success());
    if !ranged {
        eprintln!("sync_file_range not tried: no python3 here");
    }

    let mut unnamed = File::create(data.join("unnamed")).unwrap();
    unnamed
        .write_all(b"synced, but its name never was")
        .unwrap();
    unnamed.sync_all().unwrap();
    drop(unnamed);
    fs::write(data.join("closed"), b"written and closed").unwrap();
    assert!(fs.volatile_bytes() > 0);

    fs.power_cut(Cut::Clean).unwrap();
    assert_eq!(fs::read(data.join("kept")).unwrap(), b"acknowledged");
    assert_eq!(fs::read(data.join("ranged")).unwrap(), b"");
    assert!(!data.join("unnamed").exists());
    assert!(!data.join("closed").exists());
    assert_eq!(fs.volatile_bytes(), 0);
}

#[test]
fn a_rename_and_a_removal_last_only_with_their_directory() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let Some(mut fs) = mount(dir.path()) else {
        return;
    };
    let root = fs.path().to_owned();
    let mut old = File::create(root.join("snapshot")).unwrap();
    old.write_all(b"old").unwrap();
    old.sync_all().unwrap();
    sync_dir(&root);
    let mut new = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(root.join("snapshot.tmp"))
        .unwrap();
    new.write_all(b"new").unwrap();
    new.sync_all().unwrap();
    fs::rename(root.join("snapshot.tmp"), root.join("snapshot")).unwrap();
    // Every program has let go of the file system, as at a power cut.
    drop((old, new));
    fs.power_cut(Cut::Clean).unwrap();
    assert_eq!(fs::read(root.join("snapshot")).unwrap(), b"old");

    fs::rename(root.join("snapshot"), root.join("moved")).unwrap();
    sync_dir(&root);
    fs::remove_file(root.join("moved")).unwrap();
    fs.power_cut(Cut::Clean).unwrap();
    assert_eq!(fs::read(root.join("moved")).unwrap(), b"old");
}

#[test]
fn a_torn_cut_keeps_a_prefix_of_what_was_written_since_the_sync() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let Some(mut fs) = mount(dir.path()) else {
        return;
    };
    let root = fs.path().to_owned();
    let full: Vec<u8> = (0..64u8).flat_map(|n| [n; 16]).collect();
    let mut shorter = 0;
    for seed in 0..8 {
        let mut log = File::create(root.join("log")).unwrap();
        sync_dir(&root);
        log.write_all(b"synced|").unwrap();
        log.sync_data().unwrap();
        for chunk in full.chunks(16) {
            log.write_all(chunk).unwrap();
        }
        drop(log);
        fs.power_cut(Cut::Torn { seed }).unwrap();
        let kept = fs::read(root.join("log")).unwrap();
        assert!(kept.starts_with(b"synced|"), "{seed}");
        assert!(full.starts_with(&kept[7..]), "{seed}: a prefix");
        if kept.len() < 7 + full.len() {
            shorter += 1;
        }
    }
    assert!(shorter > 0, "some cut tore the writes");
}
