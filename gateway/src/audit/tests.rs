use super::*;

#[test]
fn hash_is_length_prefixed() {
    // Moving a byte between fields must change the hash.
    let a = event_hash(1, "t", "ab", "c", "s", "{}", GENESIS);
    let b = event_hash(1, "t", "a", "bc", "s", "{}", GENESIS);
    assert_ne!(a, b);
    assert_eq!(a, event_hash(1, "t", "ab", "c", "s", "{}", GENESIS));
}

/// A burst of commits is a few checkpoints, the last of them of the burst's last head.
#[tokio::test]
async fn the_checkpoint_writer_coalesces_bursts() {
    let dir = std::env::temp_dir().join(format!("vre-cp-{}", crate::store::new_id("t")));
    let key = Ed25519Key::generate().unwrap();
    let checkpoints = Arc::new(Checkpointer::new(dir.clone(), key));
    let (notifier, heads) = HeadNotifier::new();
    let workers = crate::workers::Workers::default();
    {
        let (cp, heads) = (checkpoints.clone(), heads.clone());
        workers.spawn("audit-checkpoints", |stop| {
            checkpoint_worker(cp, heads, stop)
        });
    }
    let start = std::time::Instant::now();
    for seq in 1..=2000 {
        notifier.committed(ChainHead {
            seq,
            hash: format!("{seq:064x}"),
        });
        if seq % 100 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    let burst = start.elapsed();
    let last = loop {
        let lines = read_checkpoints(&dir).unwrap();
        if let Some(Ok(cp)) = lines.last() {
            if cp.seq == 2000 {
                break lines.len();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // One at the start of the burst, then one per interval, then the burst's last head.
    let bound = 2 + (burst.as_millis() / CHECKPOINT_INTERVAL.as_millis()) as usize;
    assert!(
        last <= bound,
        "{last} checkpoints for a burst of 2000 commits in {burst:?}"
    );
    workers.stop(std::time::Duration::from_secs(5)).await;
    checkpoints.write_last(&heads);
    assert_eq!(
        read_checkpoints(&dir).unwrap().len(),
        last,
        "the last head is written once"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn checkpoint_lines_round_trip() {
    let cp = Checkpoint {
        seq: 7,
        hash: GENESIS.into(),
        at: "2026-01-01T00:00:00.000Z".into(),
        kid: "abcd".into(),
        signature: vec![1, 2, 3],
    };
    assert_eq!(Checkpoint::parse(cp.line().trim_end()), Some(cp));
    assert_eq!(Checkpoint::parse("7 x"), None);
}
