//! The cloud's side of the contract, as the reference cloud (`hubctl`) and
//! the tests build it: a data set split into snapshot chunks under the
//! payload limit, and the changes between two data sets.

use std::collections::BTreeMap;

use hub_proto::v1 as pb;
use hub_proto::v1::Message;

use super::convert::{self, Record};
use crate::access::DataSet;

/// `data` at `revision` as snapshot chunks of at most `max_bytes` encoded
/// bytes each (a single record larger than that gets a chunk of its own).
pub fn snapshot_chunks(
    data: &DataSet,
    revision: u64,
    snapshot_id: &str,
    max_bytes: usize,
) -> Vec<pb::SnapshotChunk> {
    let head = pb::SnapshotChunk {
        snapshot_id: snapshot_id.to_owned(),
        revision,
        chunk_index: u32::MAX,
        chunk_count: u32::MAX,
        entities: Vec::new(),
    }
    .encoded_len();
    let mut groups: Vec<Vec<pb::Entity>> = vec![Vec::new()];
    let mut size = head;
    for record in convert::records(data) {
        let e = convert::to_proto(&record);
        let len = e.encoded_len() + 6;
        let last_empty = groups.last().is_none_or(Vec::is_empty);
        if size + len > max_bytes && !last_empty {
            groups.push(Vec::new());
            size = head;
        }
        size += len;
        if let Some(g) = groups.last_mut() {
            g.push(e);
        }
    }
    let count = groups.len() as u32;
    groups
        .into_iter()
        .enumerate()
        .map(|(i, entities)| pb::SnapshotChunk {
            snapshot_id: snapshot_id.to_owned(),
            revision,
            chunk_index: i as u32,
            chunk_count: count,
            entities,
        })
        .collect()
}

fn key_tuple(k: &pb::EntityKey) -> (i32, String) {
    (k.kind, k.id.clone())
}

/// The changes that turn `old` into `new`: upserts of new and changed
/// records, deletes of records gone.
pub fn diff(old: &DataSet, new: &DataSet) -> Vec<pb::Change> {
    let index = |d: &DataSet| -> BTreeMap<(i32, String), Record> {
        convert::records(d)
            .into_iter()
            .map(|r| (key_tuple(&r.key()), r))
            .collect()
    };
    let (old, new) = (index(old), index(new));
    let mut out = Vec::new();
    for (k, r) in &new {
        if old.get(k) != Some(r) {
            out.push(pb::Change {
                op: Some(pb::change::Op::Upsert(convert::to_proto(r))),
            });
        }
    }
    for (k, r) in &old {
        if !new.contains_key(k) {
            out.push(pb::Change {
                op: Some(pb::change::Op::Delete(r.key())),
            });
        }
    }
    out
}

/// Upserts of every record of `data` except the site (for `hubctl
/// change --upsert FILE`, where the file holds only some records).
pub fn upserts(data: &DataSet) -> Vec<pb::Change> {
    convert::records(data)
        .into_iter()
        .filter(|r| !matches!(r, Record::Site(_)))
        .map(|r| pb::Change {
            op: Some(pb::change::Op::Upsert(convert::to_proto(&r))),
        })
        .collect()
}
