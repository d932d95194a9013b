//! Compact tables for the [`super::View`]: what a million credentials cost
//! in memory is decided here.
//!
//! - [`StrArena`]: many strings in one buffer with end offsets (4 bytes of
//!   overhead a string instead of an allocation each).
//! - [`FrontCoded`]: strings appended in order, each stored as the length of
//!   the prefix it shares with the previous one and the rest; a restart
//!   every [`FRONT_CODED_BLOCK`] strings bounds a lookup. Credential ids come
//!   from the store in key order, so they share long prefixes.
//! - [`StrIndex`]: an open-addressing hash table of `u32` positions into a
//!   [`StrArena`] (a string → position lookup without a copy of the keys).
//! - [`PackedCard`]: a card's facility and number packed into one `u64`,
//!   the key of the sorted card arrays ([`CardTable`]).
//! - [`Sparse`]: rarely set data by position (validity windows, entrances,
//!   memberships), with a shared empty default.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Strings between two restarts of a [`FrontCoded`] list.
pub(crate) const FRONT_CODED_BLOCK: usize = 16;

/// Many strings in one buffer; string `i` is `bytes[ends[i-1]..ends[i]]`.
#[derive(Clone, Default)]
pub(crate) struct StrArena {
    bytes: String,
    ends: Vec<u32>,
}

impl StrArena {
    /// Appends a string and returns its position; `None` when the buffer
    /// would pass 4 GiB.
    pub(crate) fn push(&mut self, s: &str) -> Option<u32> {
        let end = u32::try_from(self.bytes.len() + s.len()).ok()?;
        let position = u32::try_from(self.ends.len()).ok()?;
        self.bytes.push_str(s);
        self.ends.push(end);
        Some(position)
    }

    /// String `i` (empty when out of range).
    pub(crate) fn get(&self, i: u32) -> &str {
        let i = i as usize;
        let Some(&end) = self.ends.get(i) else {
            return "";
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.bytes.get(start as usize..end as usize).unwrap_or("")
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

/// Strings appended in order, front-coded: each entry is a LEB128 prefix
/// length (shared with the previous string; 0 at a block start), a LEB128
/// suffix length, and the suffix.
#[derive(Clone, Default)]
pub(crate) struct FrontCoded {
    bytes: Vec<u8>,
    /// Offset of each block's first entry.
    blocks: Vec<u32>,
    len: u32,
    /// The last string pushed (building only; emptied by `shrink_to_fit`).
    last: Vec<u8>,
}

fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<usize> {
    let mut v = 0usize;
    let mut shift = 0;
    loop {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        v |= usize::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

impl FrontCoded {
    /// Appends a string; `None` when the list would pass 4 GiB or 2^32
    /// strings.
    pub(crate) fn push(&mut self, s: &str) -> Option<u32> {
        let position = self.len;
        let s = s.as_bytes();
        let prefix = if position as usize % FRONT_CODED_BLOCK == 0 {
            self.blocks.push(u32::try_from(self.bytes.len()).ok()?);
            0
        } else {
            self.last.iter().zip(s).take_while(|(a, b)| a == b).count()
        };
        put_varint(&mut self.bytes, prefix);
        put_varint(&mut self.bytes, s.len() - prefix);
        self.bytes.extend_from_slice(&s[prefix..]);
        u32::try_from(self.bytes.len()).ok()?;
        self.last.clear();
        self.last.extend_from_slice(s);
        self.len = position.checked_add(1)?;
        Some(position)
    }

    /// String `i`, decoded (`None` when out of range).
    pub(crate) fn get(&self, i: u32) -> Option<String> {
        if i >= self.len {
            return None;
        }
        let block = i as usize / FRONT_CODED_BLOCK;
        let mut pos = *self.blocks.get(block)? as usize;
        let mut out: Vec<u8> = Vec::new();
        for _ in 0..=(i as usize % FRONT_CODED_BLOCK) {
            let prefix = get_varint(&self.bytes, &mut pos)?;
            let suffix = get_varint(&self.bytes, &mut pos)?;
            out.truncate(prefix);
            out.extend_from_slice(self.bytes.get(pos..pos + suffix)?);
            pos += suffix;
        }
        // Whole strings were pushed, so the bytes are UTF-8 again.
        String::from_utf8(out).ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// The last string pushed, while building (empty after
    /// `shrink_to_fit`).
    pub(crate) fn last(&self) -> &[u8] {
        &self.last
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.blocks.shrink_to_fit();
        self.last = Vec::new();
    }
}

/// Positions of strings of a [`StrArena`], by string: open addressing with
/// linear probing over `u32` slots (`u32::MAX`: empty), at most half full.
#[derive(Clone)]
pub(crate) struct StrIndex {
    slots: Vec<u32>,
    /// Random keys per index (ids come from outside).
    hasher: RandomState,
}

impl Default for StrIndex {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            hasher: RandomState::new(),
        }
    }
}

const EMPTY: u32 = u32::MAX;

impl StrIndex {
    fn hash(&self, s: &str) -> usize {
        let mut h = self.hasher.build_hasher();
        h.write(s.as_bytes());
        h.finish() as usize
    }

    fn grow(&mut self, arena: &StrArena) {
        let size = (arena.len() * 2).next_power_of_two().max(16);
        let mut slots = vec![EMPTY; size];
        for &p in self.slots.iter().filter(|&&p| p != EMPTY) {
            let mut i = self.hash(arena.get(p)) & (size - 1);
            while slots[i] != EMPTY {
                i = (i + 1) & (size - 1);
            }
            slots[i] = p;
        }
        self.slots = slots;
    }

    /// Indexes string `position` of `arena`; returns the position already
    /// holding an equal string instead, if any (nothing is changed then).
    pub(crate) fn insert(&mut self, arena: &StrArena, position: u32) -> Option<u32> {
        if (self.slots.len()) < arena.len() * 2 {
            self.grow(arena);
        }
        let s = arena.get(position);
        let mask = self.slots.len() - 1;
        let mut i = self.hash(s) & mask;
        loop {
            match self.slots[i] {
                EMPTY => {
                    self.slots[i] = position;
                    return None;
                }
                p if p == position => return None,
                p if arena.get(p) == s => return Some(p),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The position of `s` in `arena`.
    pub(crate) fn get(&self, arena: &StrArena, s: &str) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.hash(s) & mask;
        loop {
            match self.slots[i] {
                EMPTY => return None,
                p if arena.get(p) == s => return Some(p),
                _ => i = (i + 1) & mask,
            }
        }
    }
}

/// A card's facility and number in one `u64`: facility + 1 (0: none) in the
/// top 24 bits, the number in the low 40. Cards outside that range
/// (facility ≥ 2^24 - 1, number ≥ 2^40) are kept in a hash map instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PackedCard(u64);

const NUMBER_BITS: u32 = 40;

impl PackedCard {
    pub(crate) fn new(facility: Option<u32>, number: u64) -> Option<Self> {
        let tag = match facility {
            None => 0,
            Some(f) if f < (1 << 24) - 1 => u64::from(f) + 1,
            Some(_) => return None,
        };
        if number >= 1 << NUMBER_BITS {
            return None;
        }
        Some(Self(tag << NUMBER_BITS | number))
    }

    /// As three `u32`s with an owner: `[high, low, owner]`, which sort by
    /// card then owner.
    fn entry(self, owner: u32) -> [u32; 3] {
        [(self.0 >> 32) as u32, self.0 as u32, owner]
    }
}

/// Sorted `[card high, card low, owner]` entries: 12 bytes a card, binary
/// search. Built by pushing in any order, then [`CardTable::sort`].
#[derive(Clone, Default)]
pub(crate) struct CardTable {
    entries: Vec<[u32; 3]>,
}

impl CardTable {
    pub(crate) fn push(&mut self, card: PackedCard, owner: u32) {
        self.entries.push(card.entry(owner));
    }

    /// Sorts by card, then owner, and frees the spare capacity.
    pub(crate) fn sort(&mut self) {
        self.entries.sort_unstable();
        self.entries.shrink_to_fit();
    }

    /// Pairs `(earlier owner, later owner)` of the same card, for each card
    /// held twice or more (the two lowest owners). Call after `sort`.
    pub(crate) fn duplicates(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.entries.windows(2).enumerate().filter_map(|(i, w)| {
            let same = w[0][..2] == w[1][..2];
            let first_of_run = i == 0 || self.entries[i - 1][..2] != w[0][..2];
            (same && first_of_run).then_some((w[0][2], w[1][2]))
        })
    }

    /// The owner of `card` (the lowest when there are several). Call after
    /// `sort`.
    pub(crate) fn get(&self, card: PackedCard) -> Option<u32> {
        let key = card.entry(0);
        let i = self.entries.partition_point(|e| e[..2] < key[..2]);
        self.entries
            .get(i)
            .filter(|e| e[..2] == key[..2])
            .map(|e| e[2])
    }
}

/// Values at a few positions of a long list, sorted by position, and a
/// default for every other position.
#[derive(Clone)]
pub(crate) struct Sparse<T: 'static> {
    entries: Vec<(u32, T)>,
    default: &'static T,
}

impl<T> Sparse<T> {
    pub(crate) fn new(default: &'static T) -> Self {
        Self {
            entries: Vec::new(),
            default,
        }
    }

    /// Sets the value at `position`, which must be above every position
    /// set so far (positions are set in order while building).
    pub(crate) fn push(&mut self, position: u32, value: T) {
        debug_assert!(self.entries.last().is_none_or(|(p, _)| *p < position));
        self.entries.push((position, value));
    }

    pub(crate) fn get(&self, position: u32) -> &T {
        match self.entries.binary_search_by_key(&position, |(p, _)| *p) {
            Ok(i) => &self.entries[i].1,
            Err(_) => self.default,
        }
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
    }
}

/// Lists of `u32` by position in one buffer (compressed sparse rows).
#[derive(Clone, Default)]
pub(crate) struct Lists {
    starts: Vec<u32>,
    items: Vec<u32>,
}

impl Lists {
    /// From one list per position.
    pub(crate) fn from_lists(lists: Vec<Vec<u32>>) -> Option<Self> {
        let total: usize = lists.iter().map(Vec::len).sum();
        u32::try_from(total).ok()?;
        let mut starts = Vec::with_capacity(lists.len() + 1);
        let mut items = Vec::with_capacity(total);
        starts.push(0);
        for list in lists {
            items.extend_from_slice(&list);
            starts.push(items.len() as u32);
        }
        Some(Self { starts, items })
    }

    pub(crate) fn get(&self, position: u32) -> &[u32] {
        let p = position as usize;
        match (self.starts.get(p), self.starts.get(p + 1)) {
            (Some(&a), Some(&b)) => &self.items[a as usize..b as usize],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_coded_strings_come_back() {
        let ids: Vec<String> = (0..1000)
            .map(|i| format!("c{i}"))
            .chain(["", "ü-ü", "ü-ü-x", "zz"].map(String::from))
            .collect();
        let mut list = FrontCoded::default();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(list.push(id), Some(i as u32));
        }
        list.shrink_to_fit();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(list.get(i as u32).as_deref(), Some(id.as_str()));
        }
        assert_eq!(list.get(ids.len() as u32), None);
        assert_eq!(list.len(), ids.len());
    }

    #[test]
    fn str_index_finds_every_string_once() {
        let mut arena = StrArena::default();
        let mut index = StrIndex::default();
        for i in 0..500 {
            let p = arena.push(&format!("u{i}")).unwrap();
            assert_eq!(index.insert(&arena, p), None);
        }
        let again = arena.push("u42").unwrap();
        assert_eq!(index.insert(&arena, again), Some(42));
        assert_eq!(index.get(&arena, "u499"), Some(499));
        assert_eq!(index.get(&arena, "u500"), None);
        assert_eq!(arena.get(7), "u7");
        assert_eq!(arena.get(9999), "");
    }

    #[test]
    fn card_table_finds_cards_and_duplicates() {
        let card = |f, n| PackedCard::new(f, n).unwrap();
        let mut table = CardTable::default();
        table.push(card(Some(12), 34567), 5);
        table.push(card(None, 34567), 1);
        table.push(card(Some(12), 34567), 9);
        table.push(card(Some(12), 34567), 3);
        table.push(card(Some(0), (1 << 40) - 1), 2);
        table.sort();
        assert_eq!(table.get(card(Some(12), 34567)), Some(3));
        assert_eq!(table.get(card(None, 34567)), Some(1));
        assert_eq!(table.get(card(Some(0), (1 << 40) - 1)), Some(2));
        assert_eq!(table.get(card(Some(13), 34567)), None);
        assert_eq!(table.duplicates().collect::<Vec<_>>(), [(3, 5)]);
        assert_eq!(PackedCard::new(Some((1 << 24) - 1), 1), None);
        assert_eq!(PackedCard::new(None, 1 << 40), None);
        assert_ne!(card(None, 7), card(Some(0), 7));
    }
}
