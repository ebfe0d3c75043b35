//! The behaviour every [`StateStore`](super::StateStore) implementation owes the task: one set of
//! tests, instantiated for each store with `store_contract_tests!(make)`, where `make` returns
//! `(guard, store)` and the guard keeps whatever the store lives in (a directory) alive.

macro_rules! store_contract_tests {
    ($make:expr) => {
        use std::ops::Bound;

        use crate::store::{ByteEntry, KeyValueBytesStore, StateStore};

        fn scan(store: &dyn StateStore, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Vec<ByteEntry> {
            store.range(from, to).collect::<Result<_, _>>().unwrap()
        }

        fn entries(store: &dyn StateStore) -> Vec<ByteEntry> {
            scan(store, Bound::Unbounded, Bound::Unbounded)
        }

        fn keys(store: &dyn StateStore, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Vec<String> {
            scan(store, from, to).into_iter().map(|(key, _)| String::from_utf8(key).unwrap()).collect()
        }

        fn commit_keys(store: &mut dyn StateStore, keys: &[&str]) {
            for key in keys {
                store.put(key.as_bytes(), Some(b"committed")).unwrap();
            }
            store.commit().unwrap();
        }

        #[test]
        fn pending_writes_are_visible_and_abort_drops_them() {
            let (_guard, mut store) = $make();
            store.put(b"a", Some(b"1")).unwrap();
            store.commit().unwrap();
            store.put(b"a", Some(b"2")).unwrap();
            store.put(b"b", Some(b"3")).unwrap();
            assert_eq!(store.get(b"a").unwrap(), Some(b"2".to_vec()));
            store.abort();
            assert_eq!(entries(&store), vec![(b"a".to_vec(), b"1".to_vec())]);
        }

        #[test]
        fn commit_applies_writes_and_deletes() {
            let (_guard, mut store) = $make();
            store.put(b"a", Some(b"1")).unwrap();
            store.put(b"b", Some(b"2")).unwrap();
            store.commit().unwrap();
            store.put(b"a", None).unwrap();
            assert_eq!(store.get(b"a").unwrap(), None);
            store.commit().unwrap();
            assert_eq!(entries(&store), vec![(b"b".to_vec(), b"2".to_vec())]);
            assert_eq!(store.get(b"a").unwrap(), None);
        }

        #[test]
        fn rollback_to_savepoint_keeps_earlier_pending_writes() {
            let (_guard, mut store) = $make();
            store.put(b"a", Some(b"1")).unwrap();
            store.savepoint();
            store.put(b"a", Some(b"2")).unwrap();
            store.put(b"c", Some(b"3")).unwrap();
            store.rollback_to_savepoint();
            assert_eq!(entries(&store), vec![(b"a".to_vec(), b"1".to_vec())]);
        }

        #[test]
        fn range_merges_pending_over_committed_in_key_order() {
            let (_guard, mut store) = $make();
            for key in [b"a", b"c", b"e"] {
                store.put(key, Some(b"old")).unwrap();
            }
            store.commit().unwrap();
            store.put(b"b", Some(b"new")).unwrap();
            store.put(b"c", None).unwrap();
            store.put(b"e", Some(b"new")).unwrap();
            assert_eq!(
                entries(&store),
                vec![
                    (b"a".to_vec(), b"old".to_vec()),
                    (b"b".to_vec(), b"new".to_vec()),
                    (b"e".to_vec(), b"new".to_vec())
                ]
            );
            let bounded = scan(&store, Bound::Excluded(b"a"), Bound::Included(b"c"));
            assert_eq!(bounded, vec![(b"b".to_vec(), b"new".to_vec())]);
        }

        #[test]
        fn pending_deletes_inside_a_range_hide_committed_keys() {
            let (_guard, mut store) = $make();
            commit_keys(&mut store, &["a", "b", "c", "d"]);
            store.put(b"b", None).unwrap();
            store.put(b"c", None).unwrap();
            store.put(b"bb", None).unwrap();
            let (from, to): (&[u8], &[u8]) = (b"a", b"d");
            assert_eq!(keys(&store, Bound::Included(from), Bound::Included(to)), ["a", "d"]);
            assert_eq!(keys(&store, Bound::Excluded(from), Bound::Excluded(to)), Vec::<String>::new());
            store.put(b"d", None).unwrap();
            assert_eq!(
                keys(&store, Bound::Included(b"b"), Bound::Unbounded),
                Vec::<String>::new(),
                "deletes up to the end"
            );
            store.commit().unwrap();
            assert_eq!(keys(&store, Bound::Unbounded, Bound::Unbounded), ["a"]);
        }

        #[test]
        fn pending_puts_between_committed_keys_come_in_key_order() {
            let (_guard, mut store) = $make();
            commit_keys(&mut store, &["b", "d", "f"]);
            for key in ["a", "c", "e", "g", "dd"] {
                store.put(key.as_bytes(), Some(b"pending")).unwrap();
            }
            store.put(b"d", Some(b"overwritten")).unwrap();
            assert_eq!(
                scan(&store, Bound::Excluded(b"b"), Bound::Included(b"dd")),
                vec![
                    (b"c".to_vec(), b"pending".to_vec()),
                    (b"d".to_vec(), b"overwritten".to_vec()),
                    (b"dd".to_vec(), b"pending".to_vec())
                ]
            );
            assert_eq!(keys(&store, Bound::Unbounded, Bound::Unbounded), ["a", "b", "c", "d", "dd", "e", "f", "g"]);
        }

        #[test]
        fn ranges_bounded_by_pending_keys_include_or_exclude_them() {
            let (_guard, mut store) = $make();
            commit_keys(&mut store, &["b", "d", "f"]);
            store.put(b"a", Some(b"pending")).unwrap();
            store.put(b"c", Some(b"pending")).unwrap();
            store.put(b"e", Some(b"pending")).unwrap();
            store.put(b"f", None).unwrap();
            let (a, c, e, f): (&[u8], &[u8], &[u8], &[u8]) = (b"a", b"c", b"e", b"f");
            assert_eq!(keys(&store, Bound::Included(a), Bound::Included(e)), ["a", "b", "c", "d", "e"]);
            assert_eq!(keys(&store, Bound::Excluded(a), Bound::Excluded(e)), ["b", "c", "d"]);
            assert_eq!(keys(&store, Bound::Included(c), Bound::Included(c)), ["c"]);
            assert_eq!(keys(&store, Bound::Excluded(c), Bound::Included(f)), ["d", "e"], "f is deleted");
            assert_eq!(keys(&store, Bound::Included(f), Bound::Unbounded), Vec::<String>::new());
            assert_eq!(keys(&store, Bound::Unbounded, Bound::Excluded(c)), ["a", "b"]);
        }

        #[test]
        fn a_scan_stopped_early_reads_in_order_and_leaves_the_store_usable() {
            let (_guard, mut store) = $make();
            let committed: Vec<String> = (0..100).map(|i| format!("k{i:03}")).collect();
            commit_keys(&mut store, &committed.iter().map(String::as_str).collect::<Vec<_>>());
            store.put(b"k000", None).unwrap();
            store.put(b"k0005", Some(b"pending")).unwrap();
            let first: Vec<_> =
                store.range(Bound::Unbounded, Bound::Unbounded).take(3).collect::<Result<_, _>>().unwrap();
            let first: Vec<_> = first.into_iter().map(|(key, _)| String::from_utf8(key).unwrap()).collect();
            assert_eq!(first, ["k0005", "k001", "k002"]);

            let mut interleaved = store.range(Bound::Included(b"k050"), Bound::Unbounded);
            let mut again = store.range(Bound::Included(b"k050"), Bound::Unbounded);
            assert_eq!(interleaved.next().unwrap().unwrap().0, b"k050".to_vec());
            assert_eq!(again.next().unwrap().unwrap().0, b"k050".to_vec(), "two scans do not share a position");
            assert_eq!(interleaved.next().unwrap().unwrap().0, b"k051".to_vec());
            drop((interleaved, again));

            store.put(b"k001", None).unwrap();
            store.commit().unwrap();
            assert_eq!(keys(&store, Bound::Unbounded, Bound::Excluded(b"k003")), ["k0005", "k002"]);
        }

        #[test]
        fn range_scans_match_a_model_under_random_writes_commits_and_aborts() {
            use std::collections::BTreeMap;

            let (_guard, mut store) = $make();
            let alphabet: Vec<Vec<u8>> =
                ["a", "ab", "b", "ba", "c", "d", "e"].iter().map(|k| k.as_bytes().to_vec()).collect();
            let mut committed: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut visible = committed.clone();
            // A fixed linear congruential sequence: reproducible without a dependency.
            let mut seed: u64 = 0x5eed;
            let mut next = move |below: usize| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (seed >> 33) as usize % below
            };
            for step in 0..400 {
                let key = alphabet[next(alphabet.len())].clone();
                match next(10) {
                    0 => {
                        store.commit().unwrap();
                        committed = visible.clone();
                    }
                    1 => {
                        store.abort();
                        visible = committed.clone();
                    }
                    2..=4 => {
                        store.put(&key, None).unwrap();
                        visible.remove(&key);
                    }
                    _ => {
                        let value = format!("v{step}").into_bytes();
                        store.put(&key, Some(&value)).unwrap();
                        visible.insert(key, value);
                    }
                }
                let (low, high) = (&alphabet[next(alphabet.len())], &alphabet[next(alphabet.len())]);
                let bounds = [
                    (Bound::Unbounded, Bound::Unbounded),
                    (Bound::Included(low.as_slice()), Bound::Included(high.as_slice())),
                    (Bound::Excluded(low.as_slice()), Bound::Excluded(high.as_slice())),
                    (Bound::Included(low.as_slice()), Bound::Unbounded),
                    (Bound::Unbounded, Bound::Excluded(high.as_slice())),
                ];
                for (from, to) in bounds {
                    let expected: Vec<ByteEntry> = if crate::store::is_empty_range(from, to) {
                        Vec::new()
                    } else {
                        visible.range::<[u8], _>((from, to)).map(|(k, v)| (k.clone(), v.clone())).collect()
                    };
                    assert_eq!(scan(&store, from, to), expected, "step {step}, bounds {from:?}..{to:?}");
                }
            }
        }

        #[test]
        fn inverted_ranges_are_empty_not_panics() {
            let (_guard, store) = $make();
            assert!(store.range(Bound::Included(b"z"), Bound::Included(b"a")).next().is_none());
            assert!(store.range(Bound::Excluded(b"a"), Bound::Excluded(b"a")).next().is_none());
        }

        #[test]
        fn restore_writes_committed_state() {
            let (_guard, mut store) = $make();
            store.restore(b"a", Some(b"1")).unwrap();
            store.restore(b"b", Some(b"2")).unwrap();
            store.abort();
            store.commit().unwrap();
            assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
            store.restore(b"a", None).unwrap();
            store.commit().unwrap();
            assert_eq!(store.get(b"a").unwrap(), None);
            assert_eq!(entries(&store), vec![(b"b".to_vec(), b"2".to_vec())]);
        }

        #[test]
        fn wipe_forgets_committed_and_pending_state() {
            let (_guard, mut store) = $make();
            store.put(b"a", Some(b"1")).unwrap();
            store.commit().unwrap();
            store.put(b"b", Some(b"2")).unwrap();
            store.wipe().unwrap();
            assert!(entries(&store).is_empty());
            assert_eq!(store.entries().unwrap(), 0);
        }

        #[test]
        fn entries_count_live_keys_only() {
            let (_guard, mut store) = $make();
            for key in [b"a", b"b", b"c"] {
                store.put(key, Some(b"1")).unwrap();
            }
            store.commit().unwrap();
            assert_eq!(store.entries().unwrap(), 3);
            store.put(b"a", None).unwrap();
            store.put(b"b", Some(b"2")).unwrap();
            store.put(b"never-written", None).unwrap();
            store.commit().unwrap();
            assert_eq!(store.entries().unwrap(), 2, "an overwrite, a delete and a delete of nothing");
            store.restore(b"c", None).unwrap();
            store.restore(b"d", Some(b"1")).unwrap();
            store.commit().unwrap();
            assert_eq!(store.entries().unwrap(), 2, "after a restore");
            store.put(b"e", Some(b"1")).unwrap();
            store.commit().unwrap();
            assert_eq!(store.entries().unwrap(), 3);
        }
    };
}

pub(crate) use store_contract_tests;
