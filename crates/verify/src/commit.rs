//! The prover's commitment to a product `C` without sending it: a BLAKE3 Merkle tree over
//! leaves of [`LEAF_ENTRIES`] consecutive entries of `C` in row-major order, and openings of
//! single leaves with their paths.
//!
//! A leaf hashes `0x00 ‖ index (u64 LE) ‖ its entries (i32 LE)`, an inner node
//! `0x01 ‖ left ‖ right`; the last leaf is padded with zeros; a level with an odd count carries
//! its last node up unpaired. The leaf index inside its hash ties an opened leaf to its place,
//! so a right leaf cannot be shown at another position. A root is 32 bytes however large `C`.

/// Entries of `C` per leaf: 64 bytes, one BLAKE3 block.
pub const LEAF_ENTRIES: usize = 16;

/// A node of the tree.
pub type Digest = [u8; 32];

fn leaf_hash(index: u64, entries: &[i32; LEAF_ENTRIES]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(&[0]);
    h.update(&index.to_le_bytes());
    for e in entries {
        h.update(&e.to_le_bytes());
    }
    *h.finalize().as_bytes()
}

fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(&[1]);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// How many leaves a product of `entries` entries has.
pub fn leaf_count(entries: u64) -> u64 {
    entries.div_ceil(LEAF_ENTRIES as u64).max(1)
}

/// Leaf `index` of `c`, padded with zeros past its end.
fn leaf_of(c: &[i32], index: usize) -> [i32; LEAF_ENTRIES] {
    let mut leaf = [0i32; LEAF_ENTRIES];
    let start = index * LEAF_ENTRIES;
    let end = (start + LEAF_ENTRIES).min(c.len());
    if start < end {
        leaf[..end - start].copy_from_slice(&c[start..end]);
    }
    leaf
}

/// The whole tree over a product, kept by the prover to open leaves on demand.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The entries, to open leaves from.
    c: Vec<i32>,
    /// `levels[0]` are the leaves' hashes, the last level the root alone.
    levels: Vec<Vec<Digest>>,
}

/// One opened leaf: its entries and the sibling of each node on its way to the root (`None`
/// where the node was carried up unpaired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub leaf: u64,
    pub entries: [i32; LEAF_ENTRIES],
    pub path: Vec<Option<Digest>>,
}

impl Tree {
    /// Builds the tree over `c` (row-major entries of the product).
    pub fn build(c: Vec<i32>) -> Tree {
        let leaves = leaf_count(c.len() as u64) as usize;
        let mut level: Vec<Digest> = (0..leaves)
            .map(|i| leaf_hash(i as u64, &leaf_of(&c, i)))
            .collect();
        let mut levels = Vec::new();
        while level.len() > 1 {
            let next = level
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [only] => *only,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
            levels.push(std::mem::replace(&mut level, next));
        }
        levels.push(level);
        Tree { c, levels }
    }

    pub fn root(&self) -> Digest {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_default()
    }

    /// Opens leaf `leaf`; `None` past the last leaf.
    pub fn open(&self, leaf: u64) -> Option<Opening> {
        let mut at = usize::try_from(leaf).ok()?;
        if at >= self.levels[0].len() {
            return None;
        }
        let entries = leaf_of(&self.c, at);
        let mut path = Vec::with_capacity(self.levels.len());
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = at ^ 1;
            path.push(level.get(sibling).copied());
            at /= 2;
        }
        Some(Opening {
            leaf,
            entries,
            path,
        })
    }
}

/// Whether `opening` is leaf `opening.leaf` of the tree with `root` over `entries` entries.
/// Never panics, whatever the opening holds.
pub fn verify(root: &Digest, entries: u64, opening: &Opening) -> bool {
    let leaves = leaf_count(entries);
    if opening.leaf >= leaves {
        return false;
    }
    let mut at = opening.leaf;
    let mut width = leaves;
    let mut node = leaf_hash(opening.leaf, &opening.entries);
    let mut steps = opening.path.iter();
    while width > 1 {
        let Some(sibling) = steps.next() else {
            return false;
        };
        let unpaired = at.is_multiple_of(2) && at + 1 == width;
        node = match (sibling, unpaired) {
            (None, true) => node,
            (Some(s), false) if at.is_multiple_of(2) => node_hash(&node, s),
            (Some(s), false) => node_hash(s, &node),
            _ => return false,
        };
        at /= 2;
        width = width.div_ceil(2);
    }
    steps.next().is_none() && node == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(len: usize) -> Vec<i32> {
        (0..len as i32).map(|x| x * 7 - 3).collect()
    }

    #[test]
    fn every_leaf_opens_and_verifies_at_every_size() {
        for len in [1, 15, 16, 17, 48, 49, 100, 257] {
            let tree = Tree::build(entries(len));
            let root = tree.root();
            let leaves = leaf_count(len as u64);
            for leaf in 0..leaves {
                let opening = tree.open(leaf).expect("a leaf");
                assert!(verify(&root, len as u64, &opening), "len {len} leaf {leaf}");
            }
            assert!(tree.open(leaves).is_none());
        }
    }

    #[test]
    fn a_changed_entry_position_or_path_is_refused() {
        let len = 100;
        let tree = Tree::build(entries(len));
        let root = tree.root();
        let good = tree.open(3).expect("a leaf");
        let mut bad = good.clone();
        bad.entries[5] += 1;
        assert!(!verify(&root, len as u64, &bad), "a changed entry");
        let mut moved = good.clone();
        moved.leaf = 2;
        assert!(!verify(&root, len as u64, &moved), "shown at another place");
        let mut short = good.clone();
        short.path.pop();
        assert!(!verify(&root, len as u64, &short), "a path cut short");
        let mut long = good.clone();
        long.path.push(Some([0; 32]));
        assert!(!verify(&root, len as u64, &long), "a path too long");
        let mut swapped = good.clone();
        swapped.path[0] = Some([9; 32]);
        assert!(!verify(&root, len as u64, &swapped), "a wrong sibling");
        assert!(!verify(&root, len as u64 * 2, &good), "another size");
        // Another product's tree has another root.
        let mut other = entries(len);
        other[99] += 1;
        assert_ne!(Tree::build(other).root(), root);
    }
}
