//! RFC 6962 Merkle tree hashes: leaves `SHA-256(0x00 || data)`, nodes `SHA-256(0x01 || l || r)`,
//! and an incremental root over an append-only sequence (a "frontier" of perfect subtrees).

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The roots of the perfect subtrees that make up the tree so far, largest (leftmost) first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    stack: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append a leaf whose data is `data`.
    pub fn push(&mut self, data: &[u8]) {
        let mut h = leaf_hash(data);
        let mut n = self.size;
        while n & 1 == 1 {
            let left = self.stack.pop().unwrap_or([0; 32]);
            h = node_hash(&left, &h);
            n >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// The RFC 6962 root (`SHA-256("")` for the empty tree).
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        match it.next() {
            None => Sha256::digest([]).into(),
            Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }

    pub fn to_parts(&self) -> (u64, Vec<Hash>) {
        (self.size, self.stack.clone())
    }

    /// Rebuild from saved parts; `None` if they cannot describe a frontier.
    pub fn from_parts(size: u64, stack: Vec<Hash>) -> Option<Self> {
        (size.count_ones() as usize == stack.len()).then_some(Frontier { size, stack })
    }
}

/// The RFC 6962 root of `leaves` computed the textbook way (recursive split at the largest
/// power of two), for checking [`Frontier`].
pub fn root_of(leaves: &[&[u8]]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaf_hash(leaves[0]),
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_matches_the_recursive_definition() {
        let data: Vec<Vec<u8>> = (0u32..70).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut f = Frontier::new();
        assert_eq!(f.root(), root_of(&[]));
        for n in 1..=data.len() {
            f.push(&data[n - 1]);
            let refs: Vec<&[u8]> = data[..n].iter().map(|d| d.as_slice()).collect();
            assert_eq!(f.root(), root_of(&refs), "size {n}");
        }
        let (s, st) = f.to_parts();
        assert_eq!(Frontier::from_parts(s, st), Some(f));
    }

    #[test]
    fn rfc6962_empty_root() {
        // SHA-256 of the empty string, as RFC 6962 defines the empty tree's hash.
        assert_eq!(
            crate::hex::encode(&Frontier::new().root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
